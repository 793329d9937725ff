"""Checkpoints: every N epochs and on every new best, the last K kept, written atomically."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..serialization import CorruptFileError, load_bundle, save_bundle
from .callback import Callback
from .early_stopping import check_mode, is_improvement

if TYPE_CHECKING:
    from .trainer import Trainer

CHECKPOINT_DIR = "checkpoints"
_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.safetensors$")


def checkpoint_files(run_dir: str | Path) -> list[Path]:
    """The epoch checkpoints of a run directory, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _EPOCH_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Reads one checkpoint, verifying it (CorruptFileError names the file if damaged)."""
    return load_bundle(path)


def latest_valid_checkpoint(run_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint of a run that verifies; newer damaged ones are reported by a warning."""
    for path in reversed(checkpoint_files(run_dir)):
        try:
            return path, load_checkpoint(path)
        except CorruptFileError as e:
            warnings.warn(f"skipping damaged checkpoint: {e}", RuntimeWarning, stacklevel=2)
    return None


class Checkpoint(Callback):
    """Writes checkpoints into ``<out_dir>/checkpoints/``.

    ``epoch_NNNN.safetensors`` every ``every`` epochs (the last ``keep_last`` kept),
    and ``<best_name>.safetensors`` whenever ``monitor`` reaches a new best. Each
    holds the model, optimizer and every callback's state (schedules, curriculum,
    early stopping), the RNG state, epoch, step and history, so a resumed run
    continues exactly as if never stopped.
    """

    def __init__(
        self,
        every: int = 1,
        keep_last: int = 2,
        monitor: str | None = "val_loss",
        mode: str = "min",
        best_name: str = "best",
    ) -> None:
        if every < 1:
            raise ValueError(f"Checkpoint: every must be >= 1, got {every}")
        if keep_last < 1:
            raise ValueError(f"Checkpoint: keep_last must be >= 1, got {keep_last}")
        self.every, self.keep_last = int(every), int(keep_last)
        self.monitor, self.mode = monitor, check_mode(mode)
        self.best_name = best_name
        self.best: float | None = None

    def write(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        """Called by the Trainer after every callback has seen the epoch."""
        if trainer.out_dir is None:
            return
        folder = trainer.out_dir / CHECKPOINT_DIR
        state: dict[str, Any] | None = None
        if self.monitor is not None and self.monitor in logs:
            value = float(logs[self.monitor])
            if is_improvement(value, self.best, self.mode):
                self.best = value
                state = trainer.checkpoint_state(epoch)
                save_bundle(folder / f"{self.best_name}.safetensors", state)
        if epoch % self.every == 0 or trainer.stop_training or epoch == trainer.epochs:
            state = trainer.checkpoint_state(epoch)  # includes this callback's new best
            save_bundle(folder / f"epoch_{epoch:04d}.safetensors", state)
            files = checkpoint_files(trainer.out_dir)
            for old in files[: max(0, len(files) - self.keep_last)]:
                old.unlink(missing_ok=True)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
