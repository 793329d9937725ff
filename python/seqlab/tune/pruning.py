"""A Trainer callback feeding per-epoch validation loss to an Optuna trial (for pruners
such as Hyperband)."""

from __future__ import annotations

import math
from typing import Any

from ..train.callback import Callback
from ..train.trainer import Trainer


class OptunaPruning(Callback):
    """Reports ``monitor`` after every epoch with ``trial.report(value, epoch)`` and stops
    the training when ``trial.should_prune()``; :attr:`pruned` then tells the objective to
    raise ``optuna.TrialPruned``.
    """

    def __init__(self, trial: Any, monitor: str = "val_loss") -> None:
        self.trial = trial
        self.monitor = monitor
        self.pruned = False

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        value = logs.get(self.monitor)
        if value is None:
            raise ValueError(
                f"OptunaPruning: the epoch logs have no {self.monitor!r}; give the Trainer val_data"
            )
        value = float(value)
        self.trial.report(value if math.isfinite(value) else float("inf"), epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.stop_training = True
            trainer.log(f"trial {self.trial.number} pruned after epoch {epoch} ({self.monitor} {value:.4g})")
