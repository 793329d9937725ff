"""Throughput: items (tokens, samples) per second and seconds per step, every step."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .callback import Callback

if TYPE_CHECKING:
    from .trainer import Trainer


class Throughput(Callback):
    """Measures the wall time of each optimizer step (from the end of the previous one, or
    the start of the epoch) and turns the step's sample count into items per second.

    Each step record gets ``<name>_per_sec`` (shown by the Trainer's progress bar) and
    ``step_seconds``; each epoch's logs get ``<name>_per_sec`` over the epoch's training
    steps, ``seconds_per_step`` and ``seconds_per_batch`` (per micro-batch).

    Args:
        items_per_sample: items in one sample (a language model's sequence length for
            tokens; 1 for samples).
        name: the items' name (``"tokens"``).
    """

    def __init__(self, items_per_sample: int = 1, name: str = "samples") -> None:
        if items_per_sample < 1:
            raise ValueError(f"Throughput: items_per_sample must be >= 1, got {items_per_sample}")
        self.items_per_sample = int(items_per_sample)
        self.name = name
        self._last = 0.0
        self._items = self._seconds = 0.0
        self._steps = self._batches = 0

    @property
    def key(self) -> str:
        return f"{self.name}_per_sec"

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        self._last = time.perf_counter()
        self._items = self._seconds = 0.0
        self._steps = self._batches = 0

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        now = time.perf_counter()
        seconds = max(now - self._last, 1e-9)
        self._last = now
        items = float(logs.get("samples", 0)) * self.items_per_sample
        logs[self.key] = items / seconds
        logs["step_seconds"] = seconds
        self._items += items
        self._seconds += seconds
        self._steps += 1
        self._batches += int(logs.get("batches", 1))

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self._steps:
            logs[self.key] = self._items / self._seconds
            logs["seconds_per_step"] = self._seconds / self._steps
            logs["seconds_per_batch"] = self._seconds / max(self._batches, 1)
