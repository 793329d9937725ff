"""Callback: hooks the Trainer calls around epochs and steps.

Every hook receives the :class:`~seqlab.train.Trainer`; a callback reads and changes
the run through it (``trainer.model``, ``trainer.optimizer``, ``trainer.history``,
``trainer.stop_training``). A callback whose state must survive a resume returns it
from ``state_dict()`` (nested dicts/lists of numbers, strings and ndarrays) and takes
it back in ``load_state_dict()``; checkpoints store it under ``state_key``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .trainer import Trainer


class Callback:
    """Base class: every hook does nothing."""

    @property
    def state_key(self) -> str:
        """Name of this callback's entry in a checkpoint (unique within a Trainer)."""
        return type(self).__name__

    def on_fit_begin(self, trainer: Trainer) -> None: ...

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None: ...

    def before_step(self, trainer: Trainer, loss: float) -> bool:
        """Called after backward, before clipping and the optimizer step.

        Returns False to skip this step (the gradients are discarded).
        """
        return True

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None: ...

    def on_fit_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
