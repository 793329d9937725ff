"""Curriculum: phases of epochs with a teacher-forcing ratio and a maximum length."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .callback import Callback

if TYPE_CHECKING:
    from .trainer import Trainer


@dataclass(frozen=True)
class Phase:
    """``epochs`` epochs with teacher forcing ``teacher_forcing`` and sequences cut to ``max_len``."""

    epochs: int
    teacher_forcing: float
    max_len: int | None = None


class Curriculum(Callback):
    """Sets the teacher-forcing ratio and maximum sequence length for each epoch.

    The current values are written to ``trainer.teacher_forcing_ratio`` and
    ``trainer.max_len``, to ``model.teacher_forcing_ratio`` when the model has that
    attribute (models apply the ratio per timestep), and to ``max_len`` of the
    training data when it has that attribute (e.g. :class:`SequenceBatches`).
    After the last phase its values stay.

    Args:
        phases: ``Phase`` objects or ``(epochs, teacher_forcing, max_len)`` tuples,
            e.g. ``[(5, 0.9, 20), (5, 0.7, 30), (5, 0.3, 40), (5, 0.1, 50)]``.
    """

    def __init__(self, phases: Sequence[Phase | tuple[Any, ...]]) -> None:
        self.phases = [p if isinstance(p, Phase) else Phase(*p) for p in phases]
        if not self.phases:
            raise ValueError("Curriculum: needs at least one phase")
        for i, p in enumerate(self.phases):
            if p.epochs < 1:
                raise ValueError(f"Curriculum: phase {i} has {p.epochs} epochs, expected >= 1")
            if not 0.0 <= p.teacher_forcing <= 1.0:
                raise ValueError(
                    f"Curriculum: phase {i} teacher_forcing {p.teacher_forcing} is outside [0, 1]"
                )
            if p.max_len is not None and p.max_len < 1:
                raise ValueError(f"Curriculum: phase {i} max_len {p.max_len} must be >= 1")

    def phase_at(self, epoch: int) -> Phase:
        """The phase in force at 1-based ``epoch``."""
        end = 0
        for p in self.phases:
            end += p.epochs
            if epoch <= end:
                return p
        return self.phases[-1]

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        phase = self.phase_at(epoch)
        trainer.teacher_forcing_ratio = phase.teacher_forcing
        trainer.max_len = phase.max_len
        if hasattr(trainer.model, "teacher_forcing_ratio"):
            trainer.model.teacher_forcing_ratio = phase.teacher_forcing
        if phase.max_len is not None and hasattr(trainer.train_data, "max_len"):
            trainer.train_data.max_len = phase.max_len

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        phase = self.phase_at(epoch)
        logs["teacher_forcing"] = phase.teacher_forcing
        if phase.max_len is not None:
            logs["max_len"] = phase.max_len
