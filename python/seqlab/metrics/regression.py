"""Regression metrics: MSE, RMSE, MAE and R^2 (accumulated in float64).

All take ``(pred, target)`` of the same shape, with an optional boolean ``mask``
over the leading dimensions (e.g. (B, T) for (B, T, D) data) selecting the entries
that count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import float_array, mask_array, require_finite_rows, same_shape, shape_str

__all__ = ["mae", "mse", "r2", "rmse"]


def _errors(pred: Any, target: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """pred and target as float64, restricted to the masked entries."""
    p = float_array(pred, "pred", tuple(range(1, 8)), "(N, ...)")
    t = float_array(target, "target", tuple(range(1, 8)), "(N, ...)")
    same_shape(p, t, "pred", "target")
    require_finite_rows(p, "pred")
    require_finite_rows(t, "target")
    p = p.astype(np.float64)
    t = t.astype(np.float64)
    if mask is not None:
        m = as_mask(mask, p.shape)
        p, t = p[m], t[m]
    if p.size == 0:
        raise ValueError(f"pred: no entries to average (shape {shape_str(p.shape)})")
    return p, t


def as_mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 0 or m.ndim > len(shape):
        raise ValueError(f"mask: expected the leading dimensions of {shape_str(shape)}, "
                         f"got {shape_str(m.shape)}")
    return mask_array(m, shape[: m.ndim])


def mse(pred: Any, target: Any, mask: Any = None) -> float:
    """Mean squared error over all (masked) entries."""
    p, t = _errors(pred, target, mask)
    return float(np.mean((p - t) ** 2))


def rmse(pred: Any, target: Any, mask: Any = None) -> float:
    """Root mean squared error, sqrt(mse)."""
    return float(np.sqrt(mse(pred, target, mask)))


def mae(pred: Any, target: Any, mask: Any = None) -> float:
    """Mean absolute error over all (masked) entries."""
    p, t = _errors(pred, target, mask)
    return float(np.mean(np.abs(p - t)))


def r2(pred: Any, target: Any) -> float:
    """Coefficient of determination, 1 - SS_res / SS_tot of ``target``.

    Args:
        pred, target: (N,) or (N, F); for F outputs the scores are averaged uniformly
            (scikit-learn's default). N >= 2.

    Returns:
        R^2 (1 is perfect, 0 predicts the mean, negative is worse). A constant target
        column scores 1.0 when predicted exactly and 0.0 otherwise.
    """
    p = float_array(pred, "pred", (1, 2), "(N,) or (N, F)")
    t = float_array(target, "target", (1, 2), "(N,) or (N, F)")
    same_shape(p, t, "pred", "target")
    if p.shape[0] < 2:
        raise ValueError(f"target: R^2 needs at least 2 samples, got shape {shape_str(t.shape)}")
    require_finite_rows(p, "pred")
    require_finite_rows(t, "target")
    p = p.astype(np.float64).reshape(p.shape[0], -1)
    t = t.astype(np.float64).reshape(t.shape[0], -1)
    ss_res = ((t - p) ** 2).sum(0)
    ss_tot = ((t - t.mean(0)) ** 2).sum(0)
    scores = np.where(ss_res == 0.0, 1.0, 0.0)
    nz = ss_tot > 0.0
    scores[nz] = 1.0 - ss_res[nz] / ss_tot[nz]
    return float(scores.mean())
