"""The fused pointer-generator decoder: loss and every gradient against the PyTorch twin
(benchmarks/torch_twins.py), and its argument checks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import seqlab
from seqlab import nn
from seqlab.autograd import tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def make_batch(
    rng: np.random.Generator, batch: int, steps: int, src: int, vocab: int, oov: int, embed: int, mem_dim: int
):
    """Random inputs, memory, ids (sources hold repeats and OOV slots; some targets are
    copy-only) and masks."""
    inputs = rng.standard_normal((batch, steps, embed)).astype(np.float32)
    memory = rng.standard_normal((batch, src, mem_dim)).astype(np.float32)
    lengths = rng.integers(1, src + 1, size=batch).astype(np.int64)
    lengths[0] = src
    source = rng.integers(0, vocab + oov, size=(batch, src)).astype(np.int64)
    source[:, 1] = source[:, 0]  # a repeated token: its copy weight sums two positions
    target = rng.integers(0, vocab, size=(batch, steps)).astype(np.int64)
    for b in range(batch):  # some targets only the copy can produce
        target[b, ::3] = source[b, rng.integers(0, lengths[b], size=len(target[b, ::3]))]
    mask = np.ones((batch, steps), dtype=bool)
    mask[1:, steps - 2 :] = False
    return inputs, memory, lengths, source, target, mask


def run_both(torch, dec: nn.PointerGeneratorDecoder, rng, batch=3, steps=5, src=6, oov=3, states=True):
    from torch_twins import torch_pointer_generator

    V, E, H, A = dec.vocab_size, dec.input_size, dec.hidden_size, dec.attention.kdim
    inputs, memory, lengths, source, target, mask = make_batch(rng, batch, steps, src, V, oov, E, A)
    h0 = (0.5 * rng.standard_normal((batch, H))).astype(np.float32) if states else None
    c0 = (0.5 * rng.standard_normal((batch, H))).astype(np.float32) if states else None
    x_t, m_t = tensor(inputs, requires_grad=True), tensor(memory, requires_grad=True)
    h_t = None if h0 is None else tensor(h0, requires_grad=True)
    c_t = None if c0 is None else tensor(c0, requires_grad=True)
    loss = dec(x_t, m_t, source, target, mask, V + oov, lengths, h_t, c_t)
    loss.backward()

    twin = torch_pointer_generator(dec)
    tx = torch.tensor(inputs, requires_grad=True)
    tm = torch.tensor(memory, requires_grad=True)
    th = None if h0 is None else torch.tensor(h0, requires_grad=True)
    tc = None if c0 is None else torch.tensor(c0, requires_grad=True)
    kpm = torch.arange(src)[None, :] >= torch.tensor(lengths)[:, None]
    ref = twin(tx, tm, torch.tensor(source), torch.tensor(target), torch.tensor(mask), V + oov, kpm, th, tc)
    ref.backward()
    return loss, (x_t, m_t, h_t, c_t), ref, (tx, tm, th, tc), twin


def grad_of(theirs, ours) -> np.ndarray:
    """torch's gradient of ``theirs`` as an array; zeros of ``ours``'s shape where torch has
    none (an input the loss does not reach, as with an extended vocabulary of one id)."""
    return np.zeros(ours.shape, np.float32) if theirs.grad is None else theirs.grad.numpy()


def assert_parity(loss, ours, ref, theirs, dec, twin, rtol=2e-4, atol=2e-5):
    np.testing.assert_allclose(float(loss.data), ref.item(), rtol=1e-5, atol=1e-6)
    for name, a, b in zip(("inputs", "memory", "h0", "c0"), ours, theirs, strict=True):
        if a is not None:
            np.testing.assert_allclose(a.grad, grad_of(b, a), rtol=rtol, atol=atol, err_msg=name)
    twin_grads = dict(twin.named_parameters())
    names = {
        "weight_ih": "cell.weight_ih",
        "weight_hh": "cell.weight_hh",
        "bias_ih": "cell.bias_ih",
        "bias_hh": "cell.bias_hh",
    }
    checked = 0
    for name, p in dec.named_parameters():
        key = names.get(name, name.replace("attention.", "mha."))
        np.testing.assert_allclose(p.grad, grad_of(twin_grads[key], p), rtol=rtol, atol=atol, err_msg=name)
        checked += 1
    assert checked == len(twin_grads)


@pytest.mark.parametrize(("heads", "mem_dim"), [(1, 6), (2, 8), (4, 12)])
def test_loss_and_every_gradient_match_torch(torch, rng, heads, mem_dim):
    dec = nn.PointerGeneratorDecoder(5, 8, 11, mem_dim, num_heads=heads)
    loss, ours, ref, theirs, twin = run_both(torch, dec, rng)
    assert_parity(loss, ours, ref, theirs, dec, twin)


def test_zero_states_and_threads(torch, rng):
    seqlab.set_num_threads(2)
    try:
        dec = nn.PointerGeneratorDecoder(16, 32, 300, 64, num_heads=4)
        loss, ours, ref, theirs, twin = run_both(
            torch, dec, rng, batch=9, steps=12, src=20, oov=7, states=False
        )
        assert_parity(loss, ours, ref, theirs, dec, twin)
    finally:
        seqlab.set_num_threads(1)


def test_copy_only_target_is_learnt_through_the_copy(torch, rng):
    """A target id >= V gets all its probability from the copy distribution."""
    dec = nn.PointerGeneratorDecoder(4, 8, 5, 8, num_heads=2)
    memory = tensor(rng.standard_normal((1, 3, 8)).astype(np.float32))
    source = np.array([[5, 2, 5]])
    target = np.array([[5, 6]])
    loss = dec(np.zeros((1, 2, 4), np.float32), memory, source, target, np.array([[True, False]]), 7)
    loss.backward()
    assert np.isfinite(float(loss.data)) and float(loss.data) > 0
    assert np.all(dec.out.weight.grad == 0)  # a copy-only target leaves the logits alone
    assert np.abs(dec.gen.weight.grad).sum() > 0


def test_bad_ids_raise_named_errors(rng):
    dec = nn.PointerGeneratorDecoder(4, 8, 5, 8, num_heads=2)
    x = np.zeros((2, 3, 4), np.float32)
    mem = rng.standard_normal((2, 4, 8)).astype(np.float32)
    src = np.zeros((2, 4), np.int64)
    tgt = np.zeros((2, 3), np.int64)
    mask = np.ones((2, 3), bool)
    bad_tgt = tgt.copy()
    bad_tgt[1, 2] = 7
    with pytest.raises(ValueError, match=r"target_ids: every id must be in \[0, 7\).*got 7 at \[1, 2\]"):
        dec(x, mem, src, bad_tgt, mask, 7)
    bad_src = src.copy()
    bad_src[0, 1] = -1
    with pytest.raises(ValueError, match=r"source_ids: every id must be in \[0, 6\)"):
        dec(x, mem, bad_src, tgt, mask, 6)
    with pytest.raises(ValueError, match="extended_size: must be at least the vocabulary size 5"):
        dec(x, mem, src, tgt, mask, 4)
    with pytest.raises(ValueError, match="source_ids: expected shape"):
        dec(x, mem, src[:, :2], tgt, mask, 6)
    with pytest.raises(ValueError, match="memory: expected"):
        dec(x, mem[:, :, :5], src, tgt, mask, 6)
    with pytest.raises(ValueError, match=r"memory_lengths: every length must be in \[1, 4\]"):
        dec(x, mem, src, tgt, mask, 6, np.array([0, 4]))
    with pytest.raises(TypeError, match="target_ids: expected integer ids"):
        dec(x, mem, src, tgt.astype(np.float32), mask, 6)


def test_second_backward_is_refused_and_buffers_are_reused(rng):
    dec = nn.PointerGeneratorDecoder(4, 8, 5, 8, num_heads=2)
    x, mem, lengths, src, tgt, mask = make_batch(rng, 2, 3, 4, 5, 2, 4, 8)
    first = None
    for _ in range(3):
        loss = dec(x, mem, src, tgt, mask, 7, lengths)
        dec.zero_grad()
        loss.backward()
        if first is None:
            first = dec.weight_hh.grad.copy()
        np.testing.assert_array_equal(dec.weight_hh.grad, first)
    with pytest.raises(RuntimeError, match="already used by a backward"):
        loss._backward(np.float32(1.0))
