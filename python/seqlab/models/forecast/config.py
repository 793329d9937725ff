"""Forecaster configurations: one dataclass of hyperparameters for every model, presets,
and :func:`build_model`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ... import nn
from .lstm import LSTMForecaster
from .nbeats import NBeats, generic_stacks, interpretable_stacks
from .tcn import TCNForecaster

MODELS = ("lstm", "tcn", "nbeats")


@dataclass
class ForecastConfig:
    """Hyperparameters of one forecaster and its training.

    Model: ``model`` (``"lstm"``, ``"tcn"``, ``"nbeats"``); LSTM ``hidden_size``,
    ``num_layers``, ``decoder``; TCN ``channels``, ``kernel_size``, ``dilations``; N-BEATS
    ``stack_type`` (``"interpretable"`` or ``"generic"``), ``width``, ``n_stacks``,
    ``blocks_per_stack``, ``theta_size``, ``degree``; shared ``dropout``; ``level_shift``:
    every model predicts the change from the window's last target value (N-BEATS without
    it is exactly the paper's model).
    Training: ``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``loss`` (``"mse"``,
    ``"mae"``, ``"smape"``), ``patience`` (early stopping on validation loss, 0 = off),
    ``clip_grad_norm``, ``seed``.
    Ensemble (N-BEATS style, any model): ``ensemble_lookbacks`` (lookback lengths, each
    <= the input size), ``ensemble_losses`` and ``ensemble_seeds``; one member is trained
    for every combination and the forecasts are combined by their median. Empty lists mean
    a single model.
    """

    model: str = "nbeats"
    hidden_size: int = 64
    num_layers: int = 1
    decoder: str = "mlp"
    channels: int = 32
    kernel_size: int = 3
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    stack_type: str = "interpretable"
    width: int = 256
    n_stacks: int = 4
    blocks_per_stack: int = 1
    theta_size: int = 32
    degree: int = 3
    dropout: float = 0.0
    level_shift: bool = True
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "mse"
    patience: int = 5
    clip_grad_norm: float = 1.0
    seed: int = 0
    ensemble_lookbacks: list[int] = field(default_factory=list)
    ensemble_losses: list[str] = field(default_factory=list)
    ensemble_seeds: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model: expected one of {MODELS}, got {self.model!r}")
        if self.stack_type not in ("interpretable", "generic"):
            raise ValueError(f"stack_type: expected 'interpretable' or 'generic', got {self.stack_type!r}")
        for name in ("epochs", "batch_size", "hidden_size", "num_layers", "channels", "kernel_size", "width"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected > 0, got {self.lr}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout: expected in [0, 1), got {self.dropout}")
        self.dilations = [int(d) for d in self.dilations]

    def replace(self, **overrides: Any) -> ForecastConfig:
        """A copy with ``overrides`` applied; unknown names raise a ValueError listing the known ones."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown forecaster option(s) {unknown}; known: {sorted(known)}")
        return ForecastConfig(**{**asdict(self), **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # seconds on a laptop core: tests, the notebook, --quick benchmarks
    "tiny": {
        "hidden_size": 16,
        "channels": 8,
        "dilations": [1, 2, 4],
        "width": 32,
        "n_stacks": 2,
        "theta_size": 8,
        "epochs": 3,
        "batch_size": 64,
        "patience": 0,
    },
    # the default: minutes on ETTh1
    "small": {"hidden_size": 64, "channels": 32, "width": 256, "epochs": 30},
    # the N-BEATS paper's sizes (generic width 512, 30 stacks)
    "paper": {
        "width": 512,
        "n_stacks": 30,
        "blocks_per_stack": 1,
        "hidden_size": 128,
        "channels": 64,
        "epochs": 100,
        "patience": 10,
    },
}


def preset(name: str, model: str = "nbeats", **overrides: Any) -> ForecastConfig:
    """The config of preset ``name`` (``"tiny"``, ``"small"``, ``"paper"``) for ``model``."""
    if name not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {name!r}")
    return ForecastConfig(model=model).replace(**{**PRESETS[name], **overrides})


def build_model(
    config: ForecastConfig, n_features: int, input_size: int, horizon: int, target_columns: list[int]
) -> nn.Module:
    """The untrained module of ``config`` for windows (B, input_size, n_features) predicting
    (B, horizon, len(target_columns))."""
    n_t = len(target_columns)
    if config.model == "lstm":
        return LSTMForecaster(
            n_features,
            horizon,
            n_t,
            config.hidden_size,
            config.num_layers,
            config.dropout,
            config.decoder,
            target_columns if config.level_shift else None,
        )
    if config.model == "tcn":
        return TCNForecaster(
            n_features,
            horizon,
            n_t,
            config.channels,
            config.kernel_size,
            config.dilations,
            config.dropout,
            target_columns if config.level_shift else None,
        )
    stacks = (
        interpretable_stacks()
        if config.stack_type == "interpretable"
        else generic_stacks(config.n_stacks, config.blocks_per_stack)
    )
    return NBeats(
        input_size,
        horizon,
        target_columns,
        stacks,
        config.width,
        config.theta_size,
        config.degree,
        config.level_shift,
    )
