"""Early stopping on any monitored value, restoring the best weights."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .callback import Callback

if TYPE_CHECKING:
    from .trainer import Trainer


def is_improvement(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` in direction ``mode``."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def check_mode(mode: str) -> str:
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    return mode


class EarlyStopping(Callback):
    """Stops when ``monitor`` has not improved for ``patience`` epochs.

    Args:
        monitor: a key of the epoch logs, e.g. ``"val_loss"`` or ``"val_hit@5"``.
        mode: ``"min"`` (lower is better) or ``"max"``.
        patience: epochs without improvement before stopping.
        min_delta: the least change that counts as an improvement.
        restore_best_weights: load the best epoch's weights into the model at the end.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "min",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
    ) -> None:
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience}")
        self.monitor = monitor
        self.mode = check_mode(mode)
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.restore_best_weights = restore_best_weights
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_weights: dict[str, np.ndarray] | None = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self.monitor not in logs:
            raise KeyError(
                f"EarlyStopping: monitored value '{self.monitor}' is not in the epoch logs "
                f"(available: {sorted(logs)})"
            )
        value = float(logs[self.monitor])
        if is_improvement(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = trainer.model.state_dict()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                trainer.stop_training = True
                trainer.log(
                    f"early stopping at epoch {epoch}: {self.monitor} has not improved for "
                    f"{self.wait} epochs (best {self.best:.6g} at epoch {self.best_epoch})"
                )

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            trainer.model.load_state_dict(self.best_weights)
            trainer.log(f"restored the weights of epoch {self.best_epoch} ({self.monitor} = {self.best:.6g})")

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.best_epoch = state.get("best_epoch")
        self.wait = int(state.get("wait", 0))
        self.stopped_epoch = state.get("stopped_epoch")
        self.best_weights = state.get("best_weights")
