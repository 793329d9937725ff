"""Naive forecasting baselines every model is compared with on the same windows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def last_value(x: np.ndarray, horizon: int, target_columns: Sequence[int]) -> np.ndarray:
    """Repeats the last observed value: x (B, L, C) -> (B, horizon, n_targets)."""
    last = np.asarray(x)[:, -1:, list(target_columns)]
    return np.repeat(last, horizon, axis=1).astype(np.float32)


def seasonal_naive(x: np.ndarray, horizon: int, target_columns: Sequence[int], season: int) -> np.ndarray:
    """Repeats the last full season: step h predicts the value ``season`` steps before it
    (falls back to :func:`last_value` when the window is shorter than the season)."""
    x = np.asarray(x)
    if season < 1 or season > x.shape[1]:
        return last_value(x, horizon, target_columns)
    last_season = x[:, -season:, list(target_columns)]
    reps = -(-horizon // season)
    return np.tile(last_season, (1, reps, 1))[:, :horizon].astype(np.float32)


def guess_season(timestamps: np.ndarray | None, default: int = 24) -> int:
    """A season length in steps from the sampling interval: a day of hourly data (24), a
    year of weekly (52), monthly (12) or daily (7) data; ``default`` when unknown."""
    if timestamps is None or len(timestamps) < 2:
        return default
    step = float(np.median(np.diff(timestamps.astype("datetime64[s]").astype(np.int64))))
    for seconds, season in ((3600, 24), (86400, 7), (7 * 86400, 52), (30.4 * 86400, 12)):
        if abs(step - seconds) <= 0.1 * seconds:
            return season
    return default
