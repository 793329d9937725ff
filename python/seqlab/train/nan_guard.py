"""NaN/Inf guard: skip steps with non-finite loss or gradients, lower the rate, stop if it repeats."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .callback import Callback

if TYPE_CHECKING:
    from .trainer import Trainer


class TrainingDivergedError(RuntimeError):
    """The loss or gradients stayed non-finite for too many consecutive steps."""


class NanGuard(Callback):
    """Skips an optimizer step whose loss or gradients contain NaN or Inf.

    Each skipped step multiplies every group's learning rate by ``lr_factor``; after
    ``max_consecutive`` skipped steps in a row the run stops with
    :class:`TrainingDivergedError` (weights stay at the last finite values).
    """

    def __init__(self, lr_factor: float = 0.5, max_consecutive: int = 5) -> None:
        if not 0.0 < lr_factor <= 1.0:
            raise ValueError(f"NanGuard: lr_factor must be in (0, 1], got {lr_factor}")
        if max_consecutive < 1:
            raise ValueError(f"NanGuard: max_consecutive must be >= 1, got {max_consecutive}")
        self.lr_factor = float(lr_factor)
        self.max_consecutive = int(max_consecutive)
        self.consecutive = 0
        self.skipped = 0
        self._epoch_skipped = 0

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        self._epoch_skipped = 0

    def before_step(self, trainer: Trainer, loss: float) -> bool:
        bad = None
        if not math.isfinite(loss):
            bad = f"loss is {loss}"
        else:
            for name, p in trainer.model.named_parameters():
                if p.grad is not None and not np.isfinite(np.dot(p.grad.ravel(), p.grad.ravel())):
                    bad = f"gradient of '{name}' is not finite"
                    break
        if bad is None:
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.skipped += 1
        self._epoch_skipped += 1
        if self.consecutive >= self.max_consecutive:
            raise TrainingDivergedError(
                f"training diverged: {bad} at step {trainer.global_step + 1}, the "
                f"{self.consecutive}th non-finite step in a row (the learning rate was lowered "
                f"to {trainer.optimizer.param_groups[0]['lr']:.3g}); the weights are those of "
                "the last finite step. Lower the learning rate, clip gradients, or check the data."
            )
        for group in trainer.optimizer.param_groups:
            group["lr"] = float(group["lr"]) * self.lr_factor
        trainer.log(f"step {trainer.global_step + 1}: {bad}; step skipped, learning rate x{self.lr_factor}")
        return False

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        logs["skipped_steps"] = self._epoch_skipped

    def state_dict(self) -> dict[str, Any]:
        return {"consecutive": self.consecutive, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.consecutive = int(state.get("consecutive", 0))
        self.skipped = int(state.get("skipped", 0))
