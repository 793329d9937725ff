"""Latent-space metrics: how much of a bottleneck a model uses, and its PCA spectrum."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import float_array, require_finite_rows, shape_str

__all__ = ["bottleneck_utilization", "pca_explained_variance"]


def _latents(latents: Any) -> np.ndarray:
    z = float_array(latents, "latents", (2,), "(N, d)")
    if z.shape[0] < 2 or z.shape[1] < 1:
        raise ValueError(f"latents: need at least 2 samples and 1 dimension, got "
                         f"{shape_str(z.shape)}")
    require_finite_rows(z, "latents")
    return z.astype(np.float64)


def _covariance(z: np.ndarray) -> np.ndarray:
    c = z - z.mean(0)
    return (c.T @ c) / (z.shape[0] - 1)


def bottleneck_utilization(latents: Any, threshold: float = 0.01) -> dict[str, Any]:
    """Active dimensions and participation ratio of latent codes.

    Args:
        latents: (N, d) codes, one row per sample.
        threshold: a dimension is active when its variance over samples exceeds this
            (0.01, as in Burda et al.'s active units).

    Returns:
        ``{"active_dims": int, "total_dims": d, "participation_ratio": float,
        "variances": (d,) float64}``; the participation ratio (sum lambda)^2 / sum lambda^2
        of the covariance eigenvalues is between 1 and d (0 when every variance is 0).
    """
    if not threshold >= 0.0:
        raise ValueError(f"threshold: must be >= 0, got {threshold}")
    z = _latents(latents)
    cov = _covariance(z)
    variances = np.diag(cov).copy()
    total = float(np.trace(cov))
    frob = float((cov**2).sum())  # sum of squared eigenvalues
    pr = total * total / frob if frob > 0.0 else 0.0
    return {
        "active_dims": int((variances > threshold).sum()),
        "total_dims": int(z.shape[1]),
        "participation_ratio": pr,
        "variances": variances,
    }


def pca_explained_variance(latents: Any, n: int | None = None) -> np.ndarray:
    """Explained variance ratio of the principal components, largest first.

    Args:
        latents: (N, d).
        n: components to return, 1 <= n <= d (default d).

    Returns:
        (n,) float64 ratios in [0, 1] (they sum to 1 over all d components; all zero
        when the latents do not vary).
    """
    z = _latents(latents)
    d = z.shape[1]
    if n is None:
        n = d
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= d:
        raise ValueError(f"n: must be an int in [1, {d}] for latents of shape "
                         f"{shape_str(z.shape)}, got {n!r}")
    eig = np.clip(np.linalg.eigvalsh(_covariance(z))[::-1], 0.0, None)
    total = eig.sum()
    ratios = eig / total if total > 0.0 else np.zeros_like(eig)
    return ratios[: int(n)]
