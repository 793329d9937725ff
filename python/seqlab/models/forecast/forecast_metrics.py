"""Forecast scores: MSE, MAE, R^2, sMAPE, the share of latency predictions within a
threshold, the accuracy of success-rate predictions. Plain NumPy over arrays of any
matching shape (usually (N, horizon, n_targets) in the data's units)."""

from __future__ import annotations

from typing import Any

import numpy as np


def _pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"predictions {p.shape} and targets {t.shape} must have the same shape")
    if p.size == 0:
        raise ValueError("no predictions to score")
    return p, t


def mse(pred: Any, target: Any) -> float:
    """Mean squared error."""
    p, t = _pair(pred, target)
    return float(np.mean((p - t) ** 2))


def mae(pred: Any, target: Any) -> float:
    """Mean absolute error."""
    p, t = _pair(pred, target)
    return float(np.mean(np.abs(p - t)))


def r2(pred: Any, target: Any) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (over all elements)."""
    p, t = _pair(pred, target)
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    ss_res = float(np.sum((p - t) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)


def smape(pred: Any, target: Any) -> float:
    """Symmetric mean absolute percentage error in percent, in [0, 200]."""
    p, t = _pair(pred, target)
    denom = np.abs(p) + np.abs(t)
    ratio = np.divide(2 * np.abs(p - t), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(100 * np.mean(ratio))


def within_threshold(pred: Any, target: Any, threshold: float = 0.1, relative: bool = True) -> float:
    """Share of predictions within ``threshold`` of the target: relative (|p - y| <= thr * |y|)
    or absolute (|p - y| <= thr, e.g. milliseconds of latency)."""
    p, t = _pair(pred, target)
    bound = threshold * np.abs(t) if relative else threshold
    return float(np.mean(np.abs(p - t) <= bound))


def success_accuracy(pred: Any, target: Any, cut: float = 0.95) -> float:
    """Accuracy of success-rate predictions as a classification: whether the rate is at
    least ``cut`` (a healthy agent) in the prediction and in the target."""
    p, t = _pair(pred, target)
    return float(np.mean((p >= cut) == (t >= cut)))


def forecast_scores(pred: Any, target: Any) -> dict[str, float]:
    """MSE, MAE, R^2 and sMAPE of one set of predictions."""
    return {
        "mse": mse(pred, target),
        "mae": mae(pred, target),
        "r2": r2(pred, target),
        "smape": smape(pred, target),
    }
