"""Forecasting models: LSTM, TCN and N-BEATS over windows (B, L, C) -> (B, H, n_targets),
their configuration and presets, median ensembles, naive baselines and scores."""

from . import baselines, forecast_metrics
from .config import MODELS, PRESETS, ForecastConfig, build_model, preset
from .ensemble import MedianEnsemble
from .losses import get_loss, mae_loss, mse_loss, smape_loss
from .lstm import LSTMForecaster
from .nbeats import NBeats, NBeatsBlock, generic_stacks, interpretable_stacks, seasonality_basis, trend_basis
from .tcn import TCNForecaster, TemporalBlock

__all__ = [
    "MODELS",
    "PRESETS",
    "ForecastConfig",
    "LSTMForecaster",
    "MedianEnsemble",
    "NBeats",
    "NBeatsBlock",
    "TCNForecaster",
    "TemporalBlock",
    "baselines",
    "build_model",
    "forecast_metrics",
    "generic_stacks",
    "get_loss",
    "interpretable_stacks",
    "mae_loss",
    "mse_loss",
    "preset",
    "seasonality_basis",
    "smape_loss",
    "trend_basis",
]
