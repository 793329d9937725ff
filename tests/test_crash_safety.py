"""Crash safety: checkpoints killed mid-write, a full disk during writes.

A process killed by SIGKILL at any instant of training (checkpoint writes included)
leaves a run whose every checkpoint verifies and whose newest holds every epoch the
process finished; resume continues from it. A write that hits a full disk (here
RLIMIT_FSIZE, the same EFBIG/ENOSPC path) raises an OSError naming the file, and the
file written before stays intact.
"""

from __future__ import annotations

import os
import random
import resource
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import seqlab
from seqlab.report.run_report import write_report
from seqlab.serialization import load_bundle, read_toml, save_bundle, save_weights, write_json, write_toml
from seqlab.train import Checkpoint, load_checkpoint
from seqlab.train.checkpoint import checkpoint_files, latest_valid_checkpoint
from test_trainer import make_trainer


def _in_child(body: Callable[[int], None]) -> tuple[int, bytes]:
    """Runs ``body(write_fd)`` in a forked child; returns (pid, bytes it wrote) once it ends."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            os.close(r)
            body(w)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    return pid, r  # type: ignore[return-value]


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_finished_checkpoint(tmp_path: Path) -> None:
    """100 runs killed at random instants (training steps, checkpoint writes, rotation):
    every checkpoint left verifies, the newest is at least the last one whose write
    returned, and resume continues from it."""
    out = tmp_path / "run"
    before = seqlab.get_num_threads()
    seqlab.set_num_threads(1)  # forked children then run the kernels on their own thread
    rng = random.Random(0)
    try:
        make_trainer(out, epochs=1).fit()
        written = 1
        kills = 0
        for trial in range(100):
            def body(w: int) -> None:
                class Done(Checkpoint):  # the default checkpoint, reporting each finished write
                    def write(self, trainer, epoch, logs):
                        super().write(trainer, epoch, logs)
                        os.write(w, f"{epoch}\n".encode())

                make_trainer(out, epochs=10_000, resume=True,
                             callbacks=[Done(monitor="val_loss")]).fit()

            pid, fd = _in_child(body)
            time.sleep(rng.uniform(0.0, 0.25))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            kills += os.WIFSIGNALED(status)
            done = [int(x) for x in _read_all(fd).split()]
            if done:
                written = max(written, done[-1])
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a damaged checkpoint would warn
                for path in checkpoint_files(out):
                    load_checkpoint(path)
                found = latest_valid_checkpoint(out)
            assert found is not None, f"trial {trial}: no valid checkpoint"
            path, state = found
            assert state["epoch"] >= written, f"trial {trial}: epoch {written} was written, newest is {path}"
            best = out / "checkpoints" / "best.safetensors"
            if best.exists():
                load_bundle(best)
        assert kills >= 90  # nearly every child was killed, not finished
        torn = list((out / "checkpoints").glob(".*.tmp"))  # a kill inside a write leaves its temporary
        assert torn, "no kill landed inside a checkpoint write"
        last = int(latest_valid_checkpoint(out)[1]["epoch"])
        resumed = make_trainer(out, epochs=last + 1, resume=True)
        history = resumed.fit()
        assert [h["epoch"] for h in history] == list(range(1, last + 2))
    finally:
        seqlab.set_num_threads(before)


# ------------------------------------------------------------------ disk full
def _fill_disk_then(write: Callable[[], None], limit: int) -> str:
    """Runs ``write`` in a child whose files may not grow past ``limit`` bytes; its error."""

    def body(w: int) -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal, as ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        try:
            write()
            os.write(w, b"no error")
        except Exception as e:
            os.write(w, f"{type(e).__name__}: {e}".encode())

    pid, fd = _in_child(body)
    message = _read_all(fd).decode()
    os.waitpid(pid, 0)
    return message


BIG = {"w": np.arange(50_000, dtype=np.float32)}
WRITERS: dict[str, tuple[str, Callable[[Path, int], None], Callable[[Path], object]]] = {
    "checkpoint": ("epoch_0002.safetensors", lambda p, v: save_bundle(p, {"epoch": v, **BIG}),
                   lambda p: load_bundle(p)["epoch"]),
    "weights": ("model.safetensors", lambda p, v: save_weights(p, {"w": BIG["w"] + v}),
                lambda p: float(seqlab.serialization.load_weights(p)["w"][0])),
    "config": ("config.toml", lambda p, v: write_toml(p, {"v": v, "pad": "x" * 20_000}),
               lambda p: read_toml(p)["v"]),
    "metrics": ("training_metrics.json", lambda p, v: write_json(p, {"v": v, "h": list(range(5000))}),
                lambda p: __import__("json").loads(p.read_text())["v"]),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path: Path, kind: str) -> None:
    name, write, read = WRITERS[kind]
    path = tmp_path / name
    write(path, 1)  # the previous version, written with room to spare
    size = path.stat().st_size
    message = _fill_disk_then(lambda: write(path, 2), limit=size // 2)
    assert message.startswith("OSError"), message
    assert str(path) in message and "File too large" in message and "unchanged" in message
    assert read(path) in (1, 1.0)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind


def test_full_disk_during_training_names_the_checkpoint_and_resume_works(tmp_path: Path) -> None:
    out = tmp_path / "run"
    make_trainer(out, epochs=2).fit()
    newest = checkpoint_files(out)[-1]
    before = newest.read_bytes()
    limit = newest.stat().st_size - 100  # the run's small files fit, a checkpoint does not

    def more_epochs() -> None:
        seqlab.set_num_threads(1)
        make_trainer(out, epochs=4, resume=True).fit()

    message = _fill_disk_then(more_epochs, limit)
    assert message.startswith("OSError") and "checkpoints" in message and ".safetensors" in message, message
    assert newest.read_bytes() == before
    assert latest_valid_checkpoint(out)[1]["epoch"] == 2
    history = make_trainer(out, epochs=3, resume=True).fit()
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_full_disk_during_the_report_names_it(tmp_path: Path) -> None:
    """The report's plot (written first, atomically like every file) names itself; the
    report and plot written before stay as they were."""
    out = tmp_path / "run"
    make_trainer(out, epochs=1).fit()
    files = [out / "training_metrics.png", out / "training_report.md"]
    before = [f.read_bytes() for f in files]
    message = _fill_disk_then(lambda: write_report(out), limit=1000)
    assert message.startswith("OSError") and f"{files[0]}: writing" in message, message
    assert [f.read_bytes() for f in files] == before
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
