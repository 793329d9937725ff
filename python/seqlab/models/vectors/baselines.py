"""Baselines a next-vector model must beat: copy the last vector, the context mean, and
a linear least-squares map from the last vector to the next."""

from __future__ import annotations

import numpy as np

from ...data.vector_chains import VectorChains, unit_rows
from ...data.vector_windows import window_spans

__all__ = ["LinearPredictor", "context_mean", "copy_last", "unit_rows", "window_mean"]


def copy_last(vectors: np.ndarray, starts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(Q, D)``: each window's last vector."""
    del starts
    return unit_rows(vectors[targets - 1])


def window_mean(vectors: np.ndarray, starts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(Q, D)``: the mean of each window's vectors (not normalised)."""
    csum = np.concatenate([np.zeros((1, vectors.shape[1])), np.cumsum(vectors, axis=0, dtype=np.float64)])
    return (csum[targets] - csum[starts]) / (targets - starts)[:, None]


def context_mean(vectors: np.ndarray, starts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(Q, D)``: the normalised mean of each window's vectors."""
    return unit_rows(window_mean(vectors, starts, targets))


class LinearPredictor:
    """``next ~ normalize([last, 1] @ W)``, W fitted by ridge-regularised least squares on
    the training windows (``ridge`` times the mean diagonal of the Gram matrix)."""

    def __init__(self, ridge: float = 1e-3) -> None:
        self.ridge = float(ridge)
        self.weight: np.ndarray | None = None

    def fit(self, chains: VectorChains) -> LinearPredictor:
        _, targets = window_spans(chains, 1)
        if len(targets) == 0:
            raise ValueError("LinearPredictor: the chains hold no window")
        last = chains.vectors[targets - 1].astype(np.float64)
        x = np.hstack([last, np.ones((len(targets), 1))])
        y = chains.vectors[targets].astype(np.float64)
        gram = x.T @ x
        gram[np.diag_indices_from(gram)] += self.ridge * np.trace(gram) / len(gram)
        self.weight = np.linalg.solve(gram, x.T @ y).astype(np.float32)
        return self

    def __call__(self, vectors: np.ndarray, starts: np.ndarray, targets: np.ndarray) -> np.ndarray:
        if self.weight is None:
            raise RuntimeError("LinearPredictor: call fit() first")
        last = vectors[targets - 1]
        return unit_rows(last @ self.weight[:-1] + self.weight[-1])
