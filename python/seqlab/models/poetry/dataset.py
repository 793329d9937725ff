"""The poetry autoencoder's data: poems split by poem, tokenised, chunked and embedded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.poems import PoemCorpus, load_poems
from ...data.text import ChunkReport, chunk_all, tokenize
from ...data.vocabulary import Vocabulary
from ...data.word_vectors import WordVectors, fit_word_vectors, load_word_vectors
from .config import AutoencoderConfig

SPLITS = ("train", "val", "test")


@dataclass
class PoetryData:
    """A corpus made ready for the autoencoder.

    Attributes:
        corpus: the poems read.
        vocab: the vocabulary of the training poems.
        vectors: the word vectors used (loaded or fitted on the training poems).
        embedding: ``(len(vocab), E)`` float32 matrix, row i the vector of token id i.
        poem_ids: poem indices of each split (held out by poem, never by chunk).
        chunks: token-id arrays (each ``(T_i,)`` int64) of each split.
        chunk_poems: the poem index of each chunk, per split.
        chunk_report: how many tokens the chunking kept.
        coverage: (share of vocabulary words, share of corpus tokens) with a pretrained vector.
        uncentring: maps the centred vectors back to the original ones (None when the
            vectors were not centred, or were taken from a fitted model without it).
    """

    corpus: PoemCorpus
    vocab: Vocabulary
    vectors: WordVectors
    embedding: np.ndarray
    poem_ids: dict[str, list[int]]
    chunks: dict[str, list[np.ndarray]]
    chunk_poems: dict[str, list[int]]
    chunk_report: ChunkReport
    coverage: tuple[float, float]
    uncentring: Uncentring | None = None

    def summary(self) -> str:
        sizes = ", ".join(f"{s} {len(self.poem_ids[s])} poems / {len(self.chunks[s])} chunks" for s in SPLITS)
        return (
            f"{self.corpus.summary()}\n{self.chunk_report}\nvocabulary {len(self.vocab)} tokens, "
            f"{self.vectors.dim}-d vectors from {self.vectors.source} "
            f"(cover {100 * self.coverage[0]:.1f}% of words, {100 * self.coverage[1]:.1f}% of tokens)\n"
            f"split by poem: {sizes}"
        )


def split_poems(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[int]]:
    """Seeded split of n poem indices; val/test get at least one poem when their fraction is > 0."""
    if n < 1:
        raise ValueError("split_poems: no poems")
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        raise ValueError(
            f"{n} poems are too few to hold out {n_val} for validation and {n_test} for testing; "
            "give more poems or set val_fraction/test_fraction to 0"
        )
    return {
        "test": sorted(order[:n_test].tolist()),
        "val": sorted(order[n_test : n_test + n_val].tolist()),
        "train": sorted(order[n_test + n_val :].tolist()),
    }


@dataclass(frozen=True)
class Uncentring:
    """The way back from centred, unit-length word vectors to the original ones.

    ``raw[i] = centred[i] * norms[i] + mean`` for every vocabulary row i; a prediction
    (which has no word) maps back as ``p * scale + mean``, ``scale`` the mean of the
    non-padding rows' norms. Shapes: mean (E,), norms (V,).
    """

    mean: np.ndarray
    norms: np.ndarray

    @property
    def scale(self) -> float:
        return float(self.norms[1:].mean()) if len(self.norms) > 1 else 1.0

    def words(self, embedding: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """The original vectors (N, E) of token ids (N,), from the centred ``embedding``."""
        return embedding[ids] * self.norms[ids, None] + self.mean

    def predictions(self, pred: np.ndarray) -> np.ndarray:
        """Predictions (..., E) in the centred space mapped back to the original one."""
        return pred * np.float32(self.scale) + self.mean


def center_and_normalize(
    matrix: np.ndarray, known: np.ndarray | None = None, with_uncentring: bool = False
) -> np.ndarray | tuple[np.ndarray, Uncentring]:
    """Word vectors (V, E) minus the mean of the ``known`` rows (pretrained vectors; default
    every row but padding), scaled to unit length; row 0 (padding) stays zero. With
    ``with_uncentring`` also returns the :class:`Uncentring` that maps them back."""
    rows = matrix[1:] if known is None or not known.any() else matrix[known]
    mean = rows.mean(axis=0, keepdims=True)
    out = matrix - mean
    norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-8)
    out /= norms
    out[0] = 0.0
    norms[0] = 0.0
    out = out.astype(np.float32)
    if not with_uncentring:
        return out
    return out, Uncentring(mean[0].astype(np.float32), norms[:, 0].astype(np.float32))


def prepare(
    data: str | Path | PoemCorpus | None,
    config: AutoencoderConfig,
    verbose: bool = False,
    vocab: Vocabulary | None = None,
    embedding: np.ndarray | None = None,
    uncentring: Uncentring | None = None,
) -> PoetryData:
    """Loads (or takes) a corpus and makes it ready for training and evaluation.

    Given ``vocab`` and ``embedding`` (a fitted model's, with its ``uncentring``), they are
    reused instead of built.
    """
    corpus = data if isinstance(data, PoemCorpus) else load_poems(data)
    tokens = [tokenize(p.text) for p in corpus]
    poem_ids = split_poems(len(corpus), config.val_fraction, config.test_fraction, config.seed)
    if vocab is None:
        vocab = Vocabulary.build((tokens[i] for i in poem_ids["train"]), min_count=config.min_count)
    if config.embeddings:
        vectors = load_word_vectors(config.embeddings, vocabulary=vocab.itos)
    elif embedding is not None:
        vectors = WordVectors(vocab.itos, embedding, source="the fitted model")
    else:
        if verbose:
            print(f"fitting {config.embedding_dim}-d word2vec vectors on the training poems ...", flush=True)
        vectors = fit_word_vectors(
            [tokens[i] for i in poem_ids["train"]],
            dim=config.embedding_dim,
            epochs=config.embedding_epochs,
            min_count=config.min_count,
            seed=config.seed,
        )
    if embedding is not None:
        matrix = embedding
    else:
        matrix = vectors.matrix_for(vocab, seed=config.seed)
        if config.center_embeddings:
            known = np.array([i > 1 and word in vectors.index for i, word in enumerate(vocab.itos)])
            matrix, uncentring = center_and_normalize(matrix, known, with_uncentring=True)
    chunks: dict[str, list[np.ndarray]] = {}
    chunk_poems: dict[str, list[int]] = {}
    reports = []
    for split in SPLITS:
        ids = poem_ids[split]
        parts, owners, report = chunk_all(
            [tokens[i] for i in ids], config.max_len, config.stride, config.min_chunk
        )
        chunks[split] = [vocab.encode(p) for p in parts]
        chunk_poems[split] = [ids[o] for o in owners]
        reports.append(report)
    total = ChunkReport(
        sequences=sum(r.sequences for r in reports),
        chunks=sum(r.chunks for r in reports),
        tokens=sum(r.tokens for r in reports),
        kept_tokens=sum(r.kept_tokens for r in reports),
    )
    if not chunks["train"]:
        raise ValueError(
            f"{corpus.path}: no training chunk of at least {config.min_chunk} tokens; "
            "the poems are too short (lower min_chunk)"
        )
    prepared = PoetryData(
        corpus=corpus,
        vocab=vocab,
        vectors=vectors,
        embedding=matrix,
        poem_ids=poem_ids,
        chunks=chunks,
        chunk_poems=chunk_poems,
        chunk_report=total,
        coverage=vectors.coverage(vocab),
        uncentring=uncentring,
    )
    if verbose:
        print(prepared.summary(), flush=True)
    return prepared
