"""The statistical baseline every forecaster is compared with: Holt-Winters exponential
smoothing (statsmodels' ``ExponentialSmoothing``: additive damped trend, additive season
of the detected length, initial states estimated with the smoothing parameters), refitted
at each forecast origin on the history before it.

One fit costs a fraction of a second to a few seconds (statsmodels optimises the smoothing
parameters and the ``season`` initial seasonal states), so it is evaluated at a bounded
number of origins spread evenly over the held-out windows (:func:`spread_origins`) rather
than at every window; the model is then scored on the same origins for the comparison.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

__all__ = ["DEFAULT_ORIGINS", "HISTORY_SEASONS", "holt_winters", "require_statsmodels", "spread_origins"]

DEFAULT_ORIGINS = 20
"""Origins the recipe refits Holt-Winters at by default."""

HISTORY_SEASONS = 10
"""Each fit reads at most this many seasons of history before its origin."""


def require_statsmodels() -> type:
    try:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing
    except ImportError as e:
        raise ImportError(
            "the exponential-smoothing baseline needs statsmodels: pip install 'seqlab[forecast]'"
        ) from e
    return ExponentialSmoothing


def spread_origins(n_windows: int, count: int) -> np.ndarray:
    """``min(count, n_windows)`` window indices spread evenly from the first window to the
    last, both included (int64, increasing, distinct)."""
    if n_windows < 1 or count < 1:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, n_windows - 1, min(count, n_windows)).round().astype(np.int64))


def holt_winters(
    values: np.ndarray,
    origins: Sequence[int] | np.ndarray,
    horizon: int,
    season: int,
    history: int | None = None,
) -> np.ndarray:
    """Holt-Winters forecasts refitted at each origin.

    Args:
        values: ``(N,)`` or ``(N, n_targets)`` target values in the data's units.
        origins: row indices; origin ``o`` is fitted on ``values[o - history : o]`` and
            forecasts rows ``o .. o + horizon - 1``.
        horizon: steps forecast.
        season: the season in steps; the seasonal component is left out when the history
            holds fewer than two full seasons (or ``season < 2``).
        history: most rows read before each origin (default ``HISTORY_SEASONS`` seasons,
            at least 50 rows).

    Returns:
        ``(len(origins), horizon, n_targets)`` float32 forecasts.

    Raises:
        ImportError naming ``pip install 'seqlab[forecast]'`` when statsmodels is missing;
        ValueError when an origin has fewer than 4 rows of history or lies past the series.
    """
    exp_smoothing = require_statsmodels()
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2:
        raise ValueError(f"holt_winters: values must be (N,) or (N, n_targets), got shape {v.shape}")
    if horizon < 1:
        raise ValueError(f"holt_winters: horizon must be >= 1, got {horizon}")
    history = history if history is not None else max(50, HISTORY_SEASONS * season)
    out = np.zeros((len(origins), horizon, v.shape[1]), dtype=np.float32)
    for k, origin in enumerate(int(o) for o in origins):
        if not 4 <= origin <= len(v):
            raise ValueError(f"holt_winters: origin {origin} needs 4..{len(v)} rows of history before it")
        past = v[max(0, origin - history) : origin]
        seasonal = "add" if season >= 2 and len(past) >= 2 * season else None
        for j in range(v.shape[1]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence notes of the optimiser
                fit = exp_smoothing(
                    past[:, j],
                    trend="add",
                    damped_trend=True,
                    seasonal=seasonal,
                    seasonal_periods=season if seasonal else None,
                    initialization_method="estimated",
                ).fit()
                out[k, :, j] = fit.forecast(horizon)
    return out
