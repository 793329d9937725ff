"""Training system: determinism, accumulation, resume after SIGKILL, checkpoints, callbacks, reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import seqlab
from seqlab import nn, optim
from seqlab.serialization import CorruptFileError
from seqlab.train import (
    Checkpoint,
    Curriculum,
    EarlyStopping,
    NanGuard,
    ReduceLROnPlateau,
    StepDecay,
    Trainer,
    TrainingDivergedError,
    WarmupSchedule,
    load_checkpoint,
)


def mse(pred: seqlab.Tensor, target: np.ndarray) -> seqlab.Tensor:
    diff = pred - target
    return (diff * diff).mean()


def make_data(n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (np.tanh(x @ np.array([1.0, -2.0, 0.5, 1.5])) + 0.5 * x[:, 0])[:, None].astype(np.float32)
    return x, y


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))


def make_trainer(tmp: Path | None = None, seed: int = 0, epochs: int = 4, **kw) -> Trainer:
    seqlab.manual_seed(seed)
    model = make_model()
    opt = kw.pop("optimizer", None) or optim.Adam(model.parameters(), lr=1e-2)
    return Trainer(
        model,
        mse,
        opt,
        make_data(),
        make_data(32, seed=1),
        epochs=epochs,
        batch_size=16,
        seed=seed,
        out_dir=tmp,
        progress=False,
        verbose=False,
        **kw,
    )


def strip_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_same_seed_gives_bit_identical_runs() -> None:
    a, b = make_trainer(), make_trainer()
    ha, hb = a.fit(), b.fit()
    assert strip_timing(ha) == strip_timing(hb)
    for (na, pa), (nb, pb) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert na == nb and np.array_equal(pa.data, pb.data)
    c = make_trainer(seed=1)
    c.fit()
    assert strip_timing(c.history) != strip_timing(ha)


def test_loss_falls() -> None:
    t = make_trainer(epochs=15)
    history = t.fit()
    assert history[-1]["val_loss"] < 0.5 * history[0]["val_loss"]


def _first_step_grads(batch_size: int, accumulation: int) -> list[np.ndarray]:
    seqlab.manual_seed(0)
    model = make_model()
    x, y = make_data(32)
    opt = optim.SGD(model.parameters(), lr=0.0)
    grads: list[np.ndarray] = []

    class Capture(NanGuard):
        def before_step(self, trainer, loss):
            grads.extend(p.grad.copy() for p in trainer.model.parameters())
            return True

    Trainer(
        model,
        mse,
        opt,
        (x, y),
        epochs=1,
        batch_size=batch_size,
        accumulation_steps=accumulation,
        callbacks=[Capture()],
        progress=False,
        verbose=False,
        grad_monitor=False,
    ).fit()
    return grads


def test_gradient_accumulation_equals_big_batch() -> None:
    big = _first_step_grads(32, 1)
    acc = _first_step_grads(8, 4)
    assert len(big) == len(acc) == 4
    for g1, g2 in zip(big, acc):
        np.testing.assert_allclose(g2, g1, rtol=1e-5, atol=1e-7)


def test_run_directory_is_complete_and_json_round_trips(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    t = make_trainer(out, epochs=3, metrics={"mae": lambda p, y: float(np.abs(p - y).mean())})
    t.fit()
    for name in (
        "training_metrics.json",
        "training_metrics.png",
        "training_report.md",
        "model.safetensors",
        "config.toml",
    ):
        assert (out / name).is_file(), name
    doc = json.loads((out / "training_metrics.json").read_text())
    assert [h["epoch"] for h in doc["history"]] == [1, 2, 3]
    assert doc["history"] == json.loads(json.dumps(t.metrics_document()))["history"]
    assert doc["best"]["monitor"] == "val_loss"
    assert doc["best"]["value"] == min(h["val_loss"] for h in doc["history"])
    assert "val_mae" in doc["history"][0] and doc["threads"] == seqlab.get_num_threads()
    assert len(doc["steps"]) == 3 * 6 and "layer_grad_norms" in doc["steps"][0]
    import matplotlib.image

    img = matplotlib.image.imread(out / "training_metrics.png")
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    report = (out / "training_report.md").read_text()
    assert "training_metrics.png" in report and "Best epoch" in report
    from safetensors.numpy import load_file

    weights = load_file(out / "model.safetensors")
    assert set(weights) == set(t.model.state_dict())
    from seqlab.serialization import read_toml

    assert read_toml(out / "config.toml")["trainer"]["epochs"] == 3


def test_existing_run_is_refused_then_resumed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    make_trainer(out, epochs=2).fit()
    before = (out / "training_metrics.json").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a training run"):
        make_trainer(out, epochs=4).fit()
    assert (out / "training_metrics.json").read_bytes() == before
    resumed = make_trainer(out, epochs=4, resume=True)
    history = resumed.fit()
    full = make_trainer(None, epochs=4)
    full.fit()
    assert strip_timing(history) == strip_timing(full.history)
    for pa, pb in zip(resumed.model.parameters(), full.model.parameters()):
        assert np.array_equal(pa.data, pb.data)


def test_damaged_checkpoint_is_refused_and_previous_used(tmp_path: Path) -> None:
    out = tmp_path / "run"
    make_trainer(out, epochs=3, callbacks=[Checkpoint(keep_last=3)]).fit()
    files = sorted((out / "checkpoints").glob("epoch_*.safetensors"))
    assert [f.name for f in files] == [
        "epoch_0001.safetensors",
        "epoch_0002.safetensors",
        "epoch_0003.safetensors",
    ]
    raw = bytearray(files[-1].read_bytes())
    raw[-10] ^= 0xFF  # flip bits in the last tensor
    files[-1].write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match="epoch_0003"):
        load_checkpoint(files[-1])
    files[-2].write_bytes(files[-2].read_bytes()[:100])  # truncated
    with pytest.raises(CorruptFileError, match="epoch_0002"):
        load_checkpoint(files[-2])
    state = load_checkpoint(files[0])
    assert state["epoch"] == 1
    with pytest.warns(RuntimeWarning, match="damaged checkpoint"):
        t = make_trainer(out, epochs=3, resume=True, callbacks=[Checkpoint(keep_last=3)])
        t.fit()
    assert len(t.history) == 3


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path.insert(0, {tests!r})
    import seqlab
    from seqlab.train import Callback
    from test_trainer import make_trainer

    class SlowAfter(Callback):
        def on_step_end(self, trainer, logs):
            if trainer.epoch == 2 and trainer.global_step == 2 * 6 + 3:   # middle of epoch 3
                open({marker!r}, "w").close()
                time.sleep(60)

    seqlab.set_num_threads(1)
    resume = sys.argv[1] == "resume"
    cbs = [] if resume else [SlowAfter()]
    make_trainer({out!r}, epochs=5, resume=resume, callbacks=cbs).fit()
""")


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    out, marker = tmp_path / "run", tmp_path / "marker"
    script = tmp_path / "train.py"
    script.write_text(KILL_SCRIPT.format(tests=str(Path(__file__).parent), marker=str(marker), out=str(out)))
    proc = subprocess.Popen([sys.executable, str(script), "fresh"])
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, "training process ended before the kill point"
        assert time.time() < deadline, "kill point not reached in time"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model.safetensors").exists()
    subprocess.run([sys.executable, str(script), "resume"], check=True, timeout=300)

    seqlab.set_num_threads(1)
    try:
        full = make_trainer(None, epochs=5)
        full.fit()
    finally:
        seqlab.set_num_threads(seqlab._core.hardware_threads())
    doc = json.loads((out / "training_metrics.json").read_text())
    assert strip_timing(doc["history"]) == strip_timing(json.loads(json.dumps(full.history)))
    from safetensors.numpy import load_file

    weights = load_file(out / "model.safetensors")
    for name, p in full.model.named_parameters():
        assert np.array_equal(weights[name], p.data), name


def test_early_stopping_restores_best_weights() -> None:
    seen: dict[int, dict[str, np.ndarray]] = {}

    class Snapshot(EarlyStopping):  # records the weights after every epoch
        def on_epoch_end(self, trainer, epoch, logs):
            seen[epoch] = trainer.model.state_dict()
            logs["score"] = [0.5, 0.9, 0.7, 0.6, 0.8, 0.95][epoch - 1]
            super().on_epoch_end(trainer, epoch, logs)

    stopper = Snapshot(monitor="score", mode="max", patience=3)
    t = make_trainer(epochs=6, callbacks=[stopper])
    t.fit()
    assert len(t.history) == 5 and stopper.stopped_epoch == 5 and stopper.best_epoch == 2
    for name, value in t.model.state_dict().items():
        assert np.array_equal(value, seen[2][name])


def test_warmup_cosine_values_step_by_step_and_across_resume(tmp_path: Path) -> None:
    sched = WarmupSchedule(warmup_steps=4, total_steps=24, decay="cosine", min_lr=1e-4)
    t = make_trainer(epochs=4, callbacks=[sched])
    t.fit()
    lrs = [s["lr"] for s in t.step_history]
    base = 1e-2
    expected = [
        base * s / 4 if s <= 4 else 1e-4 + (base - 1e-4) * 0.5 * (1 + np.cos(np.pi * (s - 4) / 20))
        for s in range(1, 25)
    ]
    np.testing.assert_allclose(lrs, expected, rtol=1e-9)

    out = tmp_path / "run"
    make_trainer(out, epochs=2, callbacks=[WarmupSchedule(4, 24, "cosine", 1e-4)]).fit()
    r = make_trainer(out, epochs=4, resume=True, callbacks=[WarmupSchedule(4, 24, "cosine", 1e-4)])
    r.fit()
    np.testing.assert_allclose([s["lr"] for s in r.step_history], expected, rtol=1e-9)


def test_step_decay_and_plateau_values() -> None:
    t = make_trainer(epochs=5, callbacks=[StepDecay(step_size=2, gamma=0.5)])
    t.fit()
    assert [h["lr"] for h in t.history] == pytest.approx([1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3])

    class Fixed(ReduceLROnPlateau):
        def on_epoch_end(self, trainer, epoch, logs):
            logs["v"] = [1.0, 0.5, 0.6, 0.6, 0.6, 0.6][epoch - 1]
            super().on_epoch_end(trainer, epoch, logs)

    t = make_trainer(epochs=6, callbacks=[Fixed(monitor="v", patience=1, factor=0.5)])
    t.fit()
    lrs = [g["lr"] for g in t.optimizer.param_groups]
    # bad epochs 3 and 4 -> reduce after epoch 4; bad 5, 6 -> reduce after 6
    assert lrs == pytest.approx([2.5e-3])


def test_curriculum_sets_ratio_and_max_len() -> None:
    from seqlab.data import SequenceBatches

    seqs = [np.ones((n, 2), np.float32) for n in range(5, 45)]
    data = SequenceBatches(seqs, targets=np.zeros((40, 1), np.float32), batch_size=8)
    seen = []

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(np.ones((2, 1)))
            self.teacher_forcing_ratio = 1.0

        def forward(self, batch):
            seen.append((self.teacher_forcing_ratio, batch.inputs.shape[1]))
            return seqlab.tensor(batch.inputs).mean(axis=1) @ self.w

    model = Model()
    Trainer(
        model,
        lambda out, b: mse(out, b.targets),
        optim.SGD(model.parameters(), lr=0.1),
        data,
        epochs=4,
        callbacks=[Curriculum([(2, 0.9, 20), (1, 0.5, 30), (1, 0.1, 40)])],
        progress=False,
        verbose=False,
    ).fit()
    per_epoch = [seen[i * 5 : (i + 1) * 5] for i in range(4)]
    for epoch, (ratio, cap) in enumerate([(0.9, 20), (0.9, 20), (0.5, 30), (0.1, 40)]):
        assert all(r == ratio and t <= cap for r, t in per_epoch[epoch])
        assert max(t for _, t in per_epoch[epoch]) == cap


def test_nan_guard_skips_lowers_lr_and_stops() -> None:
    x, y = make_data()
    y_bad = y.copy()
    y_bad[:] = np.nan
    seqlab.manual_seed(0)
    model = make_model()
    before = model.state_dict()
    opt = optim.Adam(model.parameters(), lr=1e-2)
    t = Trainer(
        model,
        mse,
        opt,
        (x, y_bad),
        epochs=3,
        batch_size=16,
        progress=False,
        verbose=False,
        callbacks=[NanGuard(lr_factor=0.5, max_consecutive=3)],
    )
    with pytest.raises(TrainingDivergedError, match="3th non-finite step in a row"):
        t.fit()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.25)
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k]), "weights changed by a non-finite step"


def test_gradient_monitor_warns_and_records() -> None:
    from seqlab.train import GradientMonitor, GradientWarning

    with pytest.warns(GradientWarning, match="exploding"):
        t = make_trainer(epochs=1, callbacks=[GradientMonitor(exploding=1e-3)])
        t.fit()
    assert t.history[0]["exploding_steps"] == 6
    assert all(s["grad_norm"] > 0 for s in t.step_history)
    names = set(t.step_history[0]["layer_grad_norms"])
    assert names == {n for n, _ in t.model.named_parameters()}


def test_bad_arguments() -> None:
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        Trainer(model, mse, opt, make_data(), epochs=0)
    with pytest.raises(TypeError, match="train_data: expected a tuple of arrays"):
        Trainer(model, mse, opt, "data.csv")
    with pytest.raises(ValueError, match="array 1 has 5 samples"):
        Trainer(model, mse, opt, (np.zeros((4, 4), np.float32), np.zeros((5, 1), np.float32)))
    with pytest.raises(KeyError, match="'val_hit@5' is not in the epoch logs"):
        make_trainer(epochs=1, callbacks=[EarlyStopping(monitor="val_hit@5")]).fit()
