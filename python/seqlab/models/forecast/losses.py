"""Training losses of the forecasters (one scalar Tensor each): MSE, MAE and sMAPE."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...autograd import Tensor


def mse_loss(pred: Tensor, target: Any) -> Tensor:
    """Mean squared error over every element; pred and target (B, horizon, n_targets)."""
    diff = pred - np.asarray(target, dtype=np.float32)
    return (diff * diff).mean()


def mae_loss(pred: Tensor, target: Any) -> Tensor:
    """Mean absolute error over every element."""
    return (pred - np.asarray(target, dtype=np.float32)).abs().mean()


def smape_loss(pred: Tensor, target: Any) -> Tensor:
    """Symmetric MAPE ``2|p - y| / (|p| + |y| + eps)``, averaged (N-BEATS' sMAPE loss, in [0, 2])."""
    y = np.asarray(target, dtype=np.float32)
    return ((pred - y).abs() * 2.0 / (pred.abs() + np.abs(y) + 1e-3)).mean()


LOSSES: dict[str, Callable[[Tensor, Any], Tensor]] = {"mse": mse_loss, "mae": mae_loss, "smape": smape_loss}


def get_loss(name: str) -> Callable[[Tensor, Any], Tensor]:
    """The loss called ``name`` (``"mse"``, ``"mae"`` or ``"smape"``)."""
    if name not in LOSSES:
        raise ValueError(f"loss: expected one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]
