"""Baselines of the poetry autoencoder, scored on the same held-out chunks as the model.

Three reconstructions that need no training loop, each fitted on the training chunks:

* ``most_frequent_token``: the vector of the most frequent training token at every
  position (the floor of word recovery: on English verse, ``","`` or ``"the"``);
* ``mean_vector``: the mean training token vector at every position (the floor of token
  cosine; on uncentred word vectors it alone scores high);
* ``linear_autoencoder``: PCA of the padded, flattened sequences (each chunk zero-padded
  to ``max_len`` tokens and flattened to ``max_len * E`` numbers), keeping as many
  components as the model's bottleneck: the best affine encoder/decoder pair with that
  code size in squared error, fitted in closed form (a seeded randomized SVD, exact to
  float precision at these ranks).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .dataset import Uncentring
from .evaluate import score_reconstructions

# Which scores each baseline is a floor for: the model should beat it on these.
FLOORS: dict[str, tuple[str, ...]] = {
    "most_frequent_token": ("word_top1",),
    "mean_vector": ("token_cosine",),
    "linear_autoencoder": ("word_top1", "token_cosine"),
}

DESCRIPTIONS: dict[str, str] = {
    "most_frequent_token": "the most frequent training token's vector at every position",
    "mean_vector": "the mean training token vector at every position",
    "linear_autoencoder": (
        "PCA of the padded, flattened training sequences with as many components as the "
        "bottleneck (a linear autoencoder fitted in closed form)"
    ),
}


def most_frequent_token(train_chunks: Sequence[np.ndarray]) -> int:
    """The most frequent token id of the training chunks (ties: the lowest id)."""
    counts = np.bincount(np.concatenate(train_chunks))
    counts[0] = 0  # padding
    return int(np.argmax(counts))


def mean_vector(train_chunks: Sequence[np.ndarray], embedding: np.ndarray) -> np.ndarray:
    """The mean ``(E,)`` of the training tokens' vectors."""
    return embedding[np.concatenate(train_chunks)].mean(axis=0, dtype=np.float64).astype(np.float32)


class LinearAutoencoder:
    """PCA of zero-padded, flattened sequences of word vectors: ``x -> (x - mu) V -> mu + c V^T``.

    ``fit`` keeps the top ``components`` principal directions ``V`` ``(max_len * E, k)``
    of the training sequences ``x`` (each ``(max_len * E,)``) around their mean ``mu``.
    It never forms the ``(N, max_len * E)`` matrix whole: a randomized SVD (Halko et al.
    2011; ``components + 20`` probe vectors, 4 power iterations, seeded) reads it in
    blocks of rows.
    """

    def __init__(self, components: int, max_len: int, block: int = 1024) -> None:
        if components < 1 or max_len < 1:
            raise ValueError(
                f"LinearAutoencoder: components ({components}) and max_len ({max_len}) must be >= 1"
            )
        self.components = int(components)
        self.max_len = int(max_len)
        self.block = int(block)
        self.mean: np.ndarray | None = None  # (max_len * E,)
        self.basis: np.ndarray | None = None  # (max_len * E, k), orthonormal columns
        self.code_std: np.ndarray | None = None  # (k,) standard deviation of each code component

    def _blocks(
        self, chunks: Sequence[np.ndarray], embedding: np.ndarray
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """Row blocks of the padded, flattened, mean-removed sequences, ``(b, max_len * E)``."""
        E = embedding.shape[1]
        for start in range(0, len(chunks), self.block):
            part = chunks[start : start + self.block]
            x = np.zeros((len(part), self.max_len, E), np.float32)
            for row, c in enumerate(part):
                c = c[: self.max_len]
                x[row, : len(c)] = embedding[c]
            flat = x.reshape(len(part), -1)
            if self.mean is not None:
                flat -= self.mean
            yield slice(start, start + len(part)), flat

    def fit(self, chunks: Sequence[np.ndarray], embedding: np.ndarray, seed: int = 0) -> LinearAutoencoder:
        """Fits on token-id chunks ``(T_i,)`` with word vectors ``embedding`` ``(V, E)``."""
        if len(chunks) == 0:
            raise ValueError("LinearAutoencoder.fit: no training chunks")
        self.mean = None
        D = self.max_len * embedding.shape[1]
        total = np.zeros(D, np.float64)
        for _, x in self._blocks(chunks, embedding):
            total += x.sum(axis=0, dtype=np.float64)
        self.mean = (total / len(chunks)).astype(np.float32)
        N = len(chunks)
        q = min(self.components + 20, N, D)
        rng = np.random.default_rng(seed)

        def times(m: np.ndarray) -> np.ndarray:  # X_c @ m: (N, q)
            out = np.empty((N, m.shape[1]), np.float32)
            for rows, x in self._blocks(chunks, embedding):
                out[rows] = x @ m
            return out

        def transposed_times(m: np.ndarray) -> np.ndarray:  # X_c^T @ m: (D, q)
            out = np.zeros((D, m.shape[1]), np.float32)
            for rows, x in self._blocks(chunks, embedding):
                out += x.T @ m[rows]
            return out

        y = times(rng.standard_normal((D, q)).astype(np.float32))
        for _ in range(4):
            q_n, _ = np.linalg.qr(y)
            q_d, _ = np.linalg.qr(transposed_times(q_n))
            y = times(q_d)
        q_n, _ = np.linalg.qr(y)
        small = transposed_times(q_n).T  # (q, D) = Q^T X_c
        _, sv, vt = np.linalg.svd(small.astype(np.float64), full_matrices=False)
        self.basis = np.ascontiguousarray(vt[: self.components].T, dtype=np.float32)
        self.code_std = (sv[: self.components] / np.sqrt(N)).astype(np.float32)
        return self

    def reconstruct(self, chunks: Sequence[np.ndarray], embedding: np.ndarray) -> list[np.ndarray]:
        """The reconstruction ``(T_i, E)`` of each chunk through the ``components``-d code."""
        if self.mean is None or self.basis is None:
            raise RuntimeError("LinearAutoencoder.reconstruct: call fit() first")
        E = embedding.shape[1]
        out: list[np.ndarray] = []
        for rows, x in self._blocks(chunks, embedding):
            rec = (x @ self.basis) @ self.basis.T + self.mean
            rec = rec.reshape(-1, self.max_len, E)
            for row, c in zip(range(rows.stop - rows.start), chunks[rows]):
                out.append(rec[row, : min(len(c), self.max_len)].copy())
        return out


def evaluate_baselines(
    train_chunks: Sequence[np.ndarray],
    test_chunks: Sequence[np.ndarray],
    embedding: np.ndarray,
    bottleneck: int,
    max_len: int,
    uncentring: Uncentring | None = None,
    centred: bool = True,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Scores of the three baselines on ``test_chunks`` (see the module docstring).

    Returns ``{name: scores}`` for ``most_frequent_token``, ``mean_vector`` and
    ``linear_autoencoder``, each with the keys of
    :func:`~seqlab.models.poetry.evaluate.score_reconstructions` and a ``what``.
    """
    if not train_chunks or not test_chunks:
        raise ValueError("evaluate_baselines: needs training and test chunks")
    token = most_frequent_token(train_chunks)
    mean = mean_vector(train_chunks, embedding)
    linear = LinearAutoencoder(bottleneck, max_len).fit(train_chunks, embedding, seed=seed)
    reconstructions = {
        "most_frequent_token": [np.repeat(embedding[token][None], len(c), axis=0) for c in test_chunks],
        "mean_vector": [np.repeat(mean[None], len(c), axis=0) for c in test_chunks],
        "linear_autoencoder": linear.reconstruct(test_chunks, embedding),
    }
    results = {}
    for name, preds in reconstructions.items():
        scores = score_reconstructions(preds, test_chunks, embedding, uncentring, centred)
        results[name] = {"what": DESCRIPTIONS[name], **scores}
    results["most_frequent_token"]["token_id"] = token
    return results


def shortfalls(model: dict[str, Any], baselines: dict[str, dict[str, Any]]) -> list[str]:
    """The floors the model's scores do not beat, as sentences, e.g.
    ``"word_top1 0.058 is not above linear_autoencoder's 0.069"``."""
    notes = []
    for name, keys in FLOORS.items():
        if name not in baselines:
            continue
        for key in keys:
            mine, theirs = model.get(key), baselines[name].get(key)
            if mine is not None and theirs is not None and not mine > theirs:
                notes.append(f"{key} {mine:.3f} is not above {name}'s {theirs:.3f}")
    return notes
