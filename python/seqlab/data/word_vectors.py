"""Word vectors: GloVe / word2vec text files, or vectors fitted on a corpus with gensim."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .vocabulary import Vocabulary


@dataclass
class WordVectors:
    """Words and their vectors.

    Attributes:
        words: N words.
        vectors: ``(N, D)`` float32, row i the vector of ``words[i]``.
        source: where they came from (a path, or ``"word2vec fitted on the corpus"``).
    """

    words: list[str]
    vectors: np.ndarray
    source: str = ""
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or len(self.words) != len(self.vectors):
            raise ValueError(
                f"WordVectors: {len(self.words)} words for vectors of shape {self.vectors.shape}"
            )
        self.index = {w: i for i, w in enumerate(self.words)}

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        return self.vectors[self.index[word]]

    def coverage(self, vocab: Vocabulary) -> tuple[float, float]:
        """(share of vocabulary types, share of corpus tokens) that have a vector."""
        words = vocab.itos[2:]
        counts = np.asarray(vocab.counts[2:], dtype=np.float64)
        have = np.array([w in self.index for w in words])
        types = float(have.mean()) if len(words) else 0.0
        tokens = float(counts[have].sum() / counts.sum()) if counts.sum() > 0 else types
        return types, tokens

    def matrix_for(self, vocab: Vocabulary, seed: int = 0) -> np.ndarray:
        """An ``(len(vocab), D)`` embedding matrix in the vocabulary's order.

        Padding is the zero vector; words without a vector (and ``<unk>``) get random
        Gaussian vectors with the mean norm of the known ones, drawn from ``seed``.
        """
        rng = np.random.default_rng(seed)
        out = np.zeros((len(vocab), self.dim), dtype=np.float32)
        mean_norm = float(np.linalg.norm(self.vectors, axis=1).mean()) if len(self) else 1.0
        for i, word in enumerate(vocab.itos):
            if i == 0:
                continue
            j = self.index.get(word)
            if j is not None:
                out[i] = self.vectors[j]
            else:
                v = rng.standard_normal(self.dim)
                out[i] = v / np.linalg.norm(v) * mean_norm
        return out


def load_word_vectors(
    path: str | Path, vocabulary: Iterable[str] | None = None, limit: int | None = None
) -> WordVectors:
    """Reads vectors in GloVe (``word v1 ... vD``) or word2vec text format (a ``N D`` header first).

    Args:
        path: the text file.
        vocabulary: keep only these words (a large file is read in one pass without
            holding the rest).
        limit: read at most this many vectors.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a row with the wrong number of values or a value that is not a number
            (the line is named), or no vectors at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"word vector file {path} does not exist")
    wanted = set(vocabulary) if vocabulary is not None else None
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim: int | None = None
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            for number, line in enumerate(f, start=1):
                parts = line.rstrip("\n").rstrip().split(" ")
                if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    dim = int(parts[1])  # word2vec header
                    continue
                if len(parts) < 2:
                    if line.strip():
                        raise ValueError(f"{path}, line {number}: expected 'word v1 ... vD'")
                    continue
                if dim is None:
                    dim = len(parts) - 1
                if len(parts) - 1 != dim:
                    raise ValueError(f"{path}, line {number}: {len(parts) - 1} values, expected {dim}")
                word = parts[0]
                if wanted is not None and word not in wanted:
                    continue
                try:
                    rows.append(np.array(parts[1:], dtype=np.float32))
                except ValueError:
                    raise ValueError(f"{path}, line {number}: a value is not a number") from None
                words.append(word)
                if limit is not None and len(words) >= limit:
                    break
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start} of a line)") from None
    if not rows:
        what = "no vectors" if wanted is None else "no vectors for the given vocabulary"
        raise ValueError(f"{path}: {what}")
    vectors = np.stack(rows)
    if not np.isfinite(vectors).all():
        bad = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        raise ValueError(f"{path}: the vector of '{words[bad]}' has a NaN or infinite value")
    return WordVectors(words, vectors, source=str(path))


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def fit_word_vectors(
    texts: Sequence[Sequence[str]],
    dim: int = 300,
    window: int = 5,
    min_count: int = 1,
    epochs: int = 10,
    seed: int = 0,
) -> WordVectors:
    """Fits word2vec (skip-gram) vectors on tokenised texts with gensim, deterministically.

    One worker thread, a fixed seed and a hash that does not change between Python
    processes (gensim seeds each word's initial vector by hashing it) make the result
    reproducible across runs.
    """
    try:
        from gensim.models import Word2Vec
    except ImportError as e:
        raise ImportError(
            "fitting word vectors needs gensim: pip install 'seqlab[poetry]' "
            "(or pass embeddings='path/to/glove.txt')"
        ) from e
    sentences = [list(t) for t in texts if len(t)]
    if not sentences:
        raise ValueError("fit_word_vectors: no tokens to fit vectors on")
    model = Word2Vec(
        sentences=sentences,
        vector_size=dim,
        window=window,
        min_count=min_count,
        workers=1,
        seed=seed,
        epochs=epochs,
        sg=1,
        hashfxn=_stable_hash,
    )
    words = list(model.wv.index_to_key)
    return WordVectors(words, model.wv.vectors.copy(), source="word2vec fitted on the corpus")
