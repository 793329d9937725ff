"""SequenceAutoencoder's bottleneck paths: the code fed to every decoder step, memory
dropout (attention rows decoded from the code alone), and their config checks."""

from __future__ import annotations

import numpy as np
import pytest

import seqlab
from seqlab.models.poetry import SequenceAutoencoder, preset

E = 12


def small(**overrides):
    base = {"hidden_size": 16, "bottleneck": 4, "num_heads": 2, "embedding_dim": E, "linear_path": False}
    return preset("tiny", **{**base, **overrides})


def batch(rng, b=4, t=9):
    x = rng.standard_normal((b, t, E)).astype(np.float32)
    lengths = np.array([t, t - 2, 5, 3][:b])
    return x, lengths


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_code_reaches_every_step(rng, cell):
    """With the start state cut off from the code (from_code's weight zeroed), two
    different codes still give different predictions at every step when the code is fed
    to every step, and identical ones when it is not."""
    x, lengths = batch(rng)
    codes = [seqlab.tensor(rng.standard_normal((4, 4)).astype(np.float32)) for _ in range(2)]
    for every_step in (True, False):
        seqlab.manual_seed(0)
        model = SequenceAutoencoder(small(cell=cell, code_every_step=every_step), E)
        model.from_code.weight.data[...] = 0.0
        model.eval()
        with seqlab.no_grad():
            preds = [model.decode(c, seqlab.tensor(x), lengths, teacher_forcing=True).data for c in codes]
        per_step = np.abs(preds[0] - preds[1]).max(axis=(0, 2))
        if every_step:
            assert (per_step > 1e-4).all(), per_step
        else:
            np.testing.assert_array_equal(preds[0], preds[1])


def test_code_every_step_gets_gradients(rng):
    x, lengths = batch(rng)
    model = SequenceAutoencoder(small(code_every_step=True), E)
    pred, _ = model(x, lengths, teacher_forcing=0.5)
    seqlab.losses.cosine_mse_loss(pred, seqlab.tensor(x), lengths).backward()
    assert model.code_to_gates is not None
    assert model.code_to_gates.weight.shape == (4 * 16, 4)  # LSTM: 4 gates x hidden 16
    assert np.abs(model.code_to_gates.weight.grad).max() > 0
    assert np.abs(model.encoder.weight_ih_l0.grad).max() > 0


def test_memory_dropout_rows_decode_from_the_code(rng):
    """In training, memory_dropout=1 decodes every row as use_attention=False does, 0 as
    the full memory does; a share in between drops whole rows (each row matches one of the
    two); eval mode never drops."""
    x, lengths = batch(rng)
    mask = np.ones((4, 9), dtype=bool)
    seqlab.manual_seed(0)
    model = SequenceAutoencoder(small(attention=True, memory_dropout=1.0), E)
    model.eval()
    with seqlab.no_grad():
        full, _ = model(x, lengths, teacher_forcing=mask)
        alone, _ = model(x, lengths, teacher_forcing=mask, use_attention=False)
    assert np.abs(full.data - alone.data).max() > 1e-4
    model.train()
    with seqlab.no_grad():
        dropped, _ = model(x, lengths, teacher_forcing=mask)  # every row dropped
    np.testing.assert_allclose(dropped.data, alone.data, rtol=1e-6, atol=1e-7)
    model.config = small(attention=True, memory_dropout=0.5)
    seqlab.manual_seed(3)
    seen = set()
    for _ in range(8):
        with seqlab.no_grad():
            out, _ = model(x, lengths, teacher_forcing=mask)
        for row in range(4):
            if np.allclose(out.data[row], full.data[row], rtol=1e-6, atol=1e-7):
                seen.add("full")
            else:
                np.testing.assert_allclose(out.data[row], alone.data[row], rtol=1e-6, atol=1e-7)
                seen.add("alone")
    assert seen == {"full", "alone"}
    model.eval()
    model.config = small(attention=True, memory_dropout=1.0)
    with seqlab.no_grad():
        evaluated, _ = model(x, lengths, teacher_forcing=mask)
    np.testing.assert_allclose(evaluated.data, full.data, rtol=1e-6, atol=1e-7)


def test_bottleneck_settings_are_checked():
    with pytest.raises(ValueError, match="memory_dropout"):
        small(memory_dropout=1.5)
    with pytest.raises(ValueError, match="lr_schedule"):
        small(lr_schedule="linear-ish")
    with pytest.raises(ValueError, match="warmup"):
        small(warmup=1.0)
    assert SequenceAutoencoder(small(), E).code_to_gates is None  # off by default
