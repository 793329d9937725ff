"""Learning-rate schedules, as callbacks whose state survives a resume.

Each sets ``lr`` of every parameter group of the trainer's optimizer. The values a
schedule gives are documented on each class and checked step by step in the tests.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .callback import Callback
from .early_stopping import check_mode

if TYPE_CHECKING:
    from .trainer import Trainer


def _set_lr(trainer: Trainer, lrs: list[float]) -> None:
    for group, lr in zip(trainer.optimizer.param_groups, lrs):
        group["lr"] = lr


class LRSchedule(Callback):
    """Base: remembers the optimizer's initial learning rates at fit start."""

    def __init__(self) -> None:
        self.base_lrs: list[float] | None = None

    def on_fit_begin(self, trainer: Trainer) -> None:
        if self.base_lrs is None:
            self.base_lrs = [float(g["lr"]) for g in trainer.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"base_lrs": self.base_lrs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_lrs = state.get("base_lrs")


class WarmupSchedule(LRSchedule):
    """Linear warmup then cosine or linear decay, updated every optimizer step.

    At step s (1-based, counting optimizer steps) with base rate b:
    ``s <= warmup``: ``b * s / warmup``; afterwards, with progress
    ``p = (s - warmup) / (total - warmup)`` clipped to [0, 1]:
    cosine ``min_lr + (b - min_lr) * (1 + cos(pi p)) / 2``, linear ``b - (b - min_lr) p``.

    Args:
        warmup_steps: steps of linear warmup (0 for none).
        total_steps: steps at which the decay reaches ``min_lr``; by default the
            trainer's epochs times optimizer steps per epoch.
        decay: ``"cosine"`` or ``"linear"``.
        min_lr: the final learning rate.
    """

    def __init__(
        self,
        warmup_steps: int = 0,
        total_steps: int | None = None,
        decay: str = "cosine",
        min_lr: float = 0.0,
    ) -> None:
        super().__init__()
        if decay not in ("cosine", "linear"):
            raise ValueError(f"WarmupSchedule: decay must be 'cosine' or 'linear', got {decay!r}")
        if warmup_steps < 0:
            raise ValueError(f"WarmupSchedule: warmup_steps must be >= 0, got {warmup_steps}")
        self.warmup_steps = int(warmup_steps)
        self.total_steps = total_steps
        self.decay = decay
        self.min_lr = float(min_lr)

    def lr_at(self, step: int, base: float) -> float:
        """The learning rate for 1-based optimizer step ``step``."""
        if self.warmup_steps and step <= self.warmup_steps:
            return base * step / self.warmup_steps
        total = self.total_steps or step
        span = max(1, total - self.warmup_steps)
        p = min(1.0, max(0.0, (step - self.warmup_steps) / span))
        if self.decay == "cosine":
            return self.min_lr + (base - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))
        return base - (base - self.min_lr) * p

    def on_fit_begin(self, trainer: Trainer) -> None:
        super().on_fit_begin(trainer)
        if self.total_steps is None:
            self.total_steps = trainer.epochs * trainer.steps_per_epoch()
        self._apply(trainer, trainer.global_step + 1)

    def _apply(self, trainer: Trainer, step: int) -> None:
        assert self.base_lrs is not None
        _set_lr(trainer, [self.lr_at(step, b) for b in self.base_lrs])

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        self._apply(trainer, trainer.global_step + 1)  # the rate for the next step

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "total_steps": self.total_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.total_steps = state.get("total_steps", self.total_steps)


class StepDecay(LRSchedule):
    """Multiplies the rate by ``gamma`` every ``step_size`` epochs:
    ``lr(epoch) = base * gamma ** ((epoch - 1) // step_size)`` for 1-based epochs."""

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        super().__init__()
        if step_size < 1:
            raise ValueError(f"StepDecay: step_size must be >= 1, got {step_size}")
        self.step_size = int(step_size)
        self.gamma = float(gamma)

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        assert self.base_lrs is not None
        factor = self.gamma ** ((epoch - 1) // self.step_size)
        _set_lr(trainer, [b * factor for b in self.base_lrs])


class ReduceLROnPlateau(LRSchedule):
    """Lowers the rate by ``factor`` when ``monitor`` stops improving (PyTorch's semantics).

    An epoch improves on the best when (mode min, relative threshold)
    ``value < best * (1 - threshold)``; after ``patience`` epochs without improvement
    every group's rate becomes ``max(lr * factor, min_lr)`` (changes smaller than
    ``eps`` are skipped) and ``cooldown`` epochs follow in which bad epochs are not counted.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}"
            )
        self.monitor, self.mode = monitor, check_mode(mode)
        self.factor, self.patience = float(factor), int(patience)
        self.threshold, self.threshold_mode = float(threshold), threshold_mode
        self.cooldown, self.min_lr, self.eps = int(cooldown), float(min_lr), float(eps)
        self.best: float | None = None
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            edge = (
                self.best * (1 - self.threshold)
                if self.threshold_mode == "rel"
                else self.best - self.threshold
            )
            return value < edge
        edge = (
            self.best * (1 + self.threshold) if self.threshold_mode == "rel" else self.best + self.threshold
        )
        return value > edge

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self.monitor not in logs:
            raise KeyError(
                f"ReduceLROnPlateau: '{self.monitor}' is not in the epoch logs (available: {sorted(logs)})"
            )
        value = float(logs[self.monitor])
        if self._better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group in trainer.optimizer.param_groups:
                old = float(group["lr"])
                new = max(old * self.factor, self.min_lr)
                if old - new > self.eps:
                    group["lr"] = new
                    trainer.log(
                        f"epoch {epoch}: {self.monitor} on a plateau, learning rate {old:.3g} -> {new:.3g}"
                    )
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "best": self.best,
            "num_bad_epochs": self.num_bad_epochs,
            "cooldown_counter": self.cooldown_counter,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.best = state.get("best")
        self.num_bad_epochs = int(state.get("num_bad_epochs", 0))
        self.cooldown_counter = int(state.get("cooldown_counter", 0))
