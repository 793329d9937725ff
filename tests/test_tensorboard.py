"""The TensorBoard callback and the throughput callback with the Trainer: events read back."""

from __future__ import annotations

import numpy as np
import pytest

import seqlab
from seqlab import nn, optim
from seqlab.train import Throughput, Trainer

pytest.importorskip("tensorboardX")


def test_tensorboard_events_hold_loss_lr_grad_norm_and_throughput(tmp_path):
    from seqlab.train import TensorBoardLogger, read_scalars

    seqlab.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = x @ rng.standard_normal((4, 1)).astype(np.float32)
    model = nn.Linear(4, 1)
    trainer = Trainer(
        model,
        lambda out, target: ((out - target) ** 2).mean(),
        optim.Adam(model.parameters(), lr=1e-2),
        (x, y),
        (x, y),
        epochs=3,
        batch_size=16,
        accumulation_steps=2,
        clip_grad_norm=5.0,
        out_dir=tmp_path / "run",
        callbacks=[Throughput(items_per_sample=10, name="tokens"), TensorBoardLogger()],
        verbose=False,
        progress=False,
    )
    trainer.fit()
    scalars = read_scalars(tmp_path / "run" / "tensorboard")
    steps = trainer.step_history
    assert [s for s, _ in scalars["train/loss"]] == [r["step"] for r in steps] == list(range(1, 7))
    np.testing.assert_allclose([v for _, v in scalars["train/loss"]], [r["loss"] for r in steps], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in scalars["train/lr"]], [r["lr"] for r in steps], rtol=1e-6)
    np.testing.assert_allclose(
        [v for _, v in scalars["train/grad_norm"]], [r["grad_norm"] for r in steps], rtol=1e-6
    )
    tokens = [v for _, v in scalars["train/tokens_per_sec"]]
    assert len(tokens) == 6 and all(t > 0 for t in tokens)
    # 32 samples of 10 tokens per step over the measured seconds
    for r in steps:
        assert r["samples"] == 32 and r["tokens_per_sec"] == pytest.approx(320 / r["step_seconds"])
    val = [v for _, v in scalars["epoch/val_loss"]]
    np.testing.assert_allclose(val, [h["val_loss"] for h in trainer.history], rtol=1e-6)
    assert all(h["seconds_per_step"] > 0 and h["seconds_per_batch"] > 0 for h in trainer.history)


def test_reading_a_folder_without_events_names_it(tmp_path):
    from seqlab.train import read_scalars

    with pytest.raises(FileNotFoundError, match="no TensorBoard event file"):
        read_scalars(tmp_path)
