"""TensorBoard event logs of a training run (tensorboardX's writer)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .callback import Callback

if TYPE_CHECKING:
    from .trainer import Trainer

STEP_SCALARS = (
    "loss",
    "lr",
    "grad_norm",
    "clipped_norm",
    "tokens_per_sec",
    "samples_per_sec",
    "step_seconds",
)


def require_tensorboardx() -> Any:
    try:
        from tensorboardX import SummaryWriter
    except ImportError as e:
        raise ImportError("TensorBoard logs need tensorboardX: pip install 'seqlab[tensorboard]'") from e
    return SummaryWriter


class TensorBoardLogger(Callback):
    """Writes every step's scalars under ``train/`` (loss, learning rate, gradient norm,
    throughput when a :class:`~seqlab.train.Throughput` callback measures it) and every
    epoch's numeric logs under ``epoch/``, to an event file TensorBoard reads
    (``tensorboard --logdir <log_dir>``).

    Args:
        log_dir: where the event files go; default ``<run dir>/tensorboard`` (or
            ``runs/tensorboard`` without a run directory).
        every: write the step scalars every this many optimizer steps.
    """

    def __init__(self, log_dir: str | Path | None = None, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"TensorBoardLogger: every must be >= 1, got {every}")
        require_tensorboardx()
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.every = int(every)
        self._writer: Any = None

    def on_fit_begin(self, trainer: Trainer) -> None:
        if not trainer.is_main:  # under MPI rank 0 alone writes the log
            return
        if self.log_dir is None:
            base = trainer.out_dir if trainer.out_dir is not None else Path("runs")
            self.log_dir = base / "tensorboard"
        self._writer = require_tensorboardx()(logdir=str(self.log_dir), flush_secs=30)

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        step = int(logs.get("step", trainer.global_step))
        if self._writer is None or step % self.every:
            return
        for key in STEP_SCALARS:
            v = logs.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self._writer.add_scalar(f"train/{key}", float(v), step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self._writer is None:
            return
        for key, v in logs.items():
            if (
                key != "epoch"
                and isinstance(v, (int, float))
                and not isinstance(v, bool)
                and math.isfinite(v)
            ):
                self._writer.add_scalar(f"epoch/{key}", float(v), epoch)
        self._writer.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_scalars(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of every scalar in the event files under ``log_dir``
    (a reader of the TFRecord framing, so TensorBoard itself is not needed)."""
    import struct

    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    files = sorted(Path(log_dir).rglob("events.out.tfevents.*"))
    if not files:
        raise FileNotFoundError(f"{log_dir}: no TensorBoard event file")
    for path in files:
        data = path.read_bytes()
        i = 0
        while i + 12 <= len(data):
            (length,) = struct.unpack_from("<Q", data, i)
            record = data[i + 12 : i + 12 + length]
            i += 12 + length + 4  # length, its crc, the record, its crc
            if len(record) < length:
                raise ValueError(f"{path}: truncated event record at byte {i}")
            event = event_pb2.Event.FromString(record)
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((int(event.step), float(v.simple_value)))
    return out
