"""The code optimizer's seq2seq model: loss and every gradient against its PyTorch twin,
presets, and argument checks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from seqlab.models.code import PRESETS, CodeSeq2Seq, Seq2SeqConfig, preset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def code_batch(rng: np.random.Generator, batch: int, src: int, tgt: int, vocab: int, oov: int):
    """Padded vocabulary ids, extended ids (OOV source tokens V + k, some targets copy-only)
    and lengths, as the code data batches them."""
    src_len = rng.integers(2, src + 1, size=batch)
    src_len[0] = src
    tgt_len = rng.integers(1, tgt + 1, size=batch)
    tgt_len[0] = tgt
    src_ext = rng.integers(2, vocab + oov, size=(batch, src))
    tgt_ext = rng.integers(2, vocab, size=(batch, tgt))
    tgt_ext[:, ::2] = src_ext[:, 1:2]  # copied tokens, possibly OOV
    for b in range(batch):
        src_ext[b, src_len[b] :] = 0
        tgt_ext[b, tgt_len[b] :] = 0
    unk = 1
    src_ids = np.where(src_ext >= vocab, unk, src_ext)
    tgt_ids = np.where(tgt_ext >= vocab, unk, tgt_ext)
    return src_ids, src_len, src_ext, tgt_ids, tgt_ext, tgt_len


@pytest.mark.parametrize(("layers", "heads"), [(1, 1), (2, 2)])
def test_model_loss_and_every_gradient_match_torch(torch, rng, layers, heads):
    from torch_twins import torch_code_seq2seq

    config = Seq2SeqConfig(
        vocab_size=40, embedding_dim=12, hidden_size=16, num_layers=layers, num_heads=heads, dropout=0.0
    )
    model = CodeSeq2Seq(config)
    batch = code_batch(rng, 4, 9, 7, 40, 5)
    loss = model(*batch, 45)
    model.zero_grad()
    loss.backward()

    twin = torch_code_seq2seq(model)
    ref = twin(*(torch.tensor(np.asarray(a, dtype=np.int64)) for a in batch), 45)
    ref.backward()
    np.testing.assert_allclose(float(loss.data), ref.item(), rtol=1e-5)
    theirs = {k: p.grad for k, p in twin.named_parameters()}
    renames = {
        "decoder.weight_ih": "decoder.cell.weight_ih",
        "decoder.weight_hh": "decoder.cell.weight_hh",
        "decoder.bias_ih": "decoder.cell.bias_ih",
        "decoder.bias_hh": "decoder.cell.bias_hh",
    }
    ours = dict(model.named_parameters())
    assert len(ours) == len(theirs)
    for name, p in ours.items():
        key = renames.get(name, name.replace("decoder.attention.", "decoder.mha."))
        np.testing.assert_allclose(p.grad, theirs[key].numpy(), rtol=3e-4, atol=3e-5, err_msg=name)


def test_presets_hold_the_original_configuration():
    c = PRESETS["original"]
    assert (
        c.vocab_size,
        c.hidden_size,
        c.num_layers,
        c.dropout,
        c.max_len,
        c.batch_size,
        c.lr,
        c.clip_grad_norm,
        c.patience,
    ) == (50000, 256, 2, 0.2, 100, 32, 1e-3, 5.0, 15)
    assert c.plateau_factor < 1.0
    assert preset("tiny", hidden_size=64).hidden_size == 64
    with pytest.raises(TypeError, match="unknown code model settings"):
        preset("small", hiden_size=3)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")
    with pytest.raises(ValueError, match="num_heads"):
        Seq2SeqConfig(hidden_size=30, num_heads=4)
    assert Seq2SeqConfig.from_dict(c.to_dict()) == c


def test_bad_lengths_raise(rng):
    model = CodeSeq2Seq(preset("tiny"))
    src, src_len, src_ext, tgt, tgt_ext, tgt_len = code_batch(rng, 2, 5, 4, 500, 2)
    with pytest.raises(ValueError, match=r"source_lengths: expected \(2,\) lengths in \[1, 5\]"):
        model(src, np.array([0, 5]), src_ext, tgt, tgt_ext, tgt_len, 502)
    with pytest.raises(ValueError, match="source_ids: expected a 2-d integer array"):
        model(src.astype(np.float32), src_len, src_ext, tgt, tgt_ext, tgt_len, 502)


def test_extended_ids_in_the_vocabulary_arrays_are_refused(rng):
    model = CodeSeq2Seq(preset("tiny"))
    src, src_len, src_ext, tgt, tgt_ext, tgt_len = code_batch(rng, 2, 5, 4, 500, 2)
    mixed = tgt.copy()
    mixed[1, 2] = 501
    with pytest.raises(
        ValueError, match=r"target_ids: id 501 at \[1, 2\] is not a vocabulary id in \[0, 500\)"
    ):
        model(src, src_len, src_ext, mixed, tgt_ext, tgt_len, 502)
    bad = src.copy()
    bad[0, 0] = 500
    with pytest.raises(ValueError, match=r"source_ids: id 500 at \[0, 0\]"):
        model(bad, src_len, src_ext, tgt, tgt_ext, tgt_len, 502)
