"""LayerNorm against PyTorch: outputs and gradients, affine or not, bad shapes."""

from __future__ import annotations

import numpy as np
import pytest

import seqlab
import seqlab.functional as F
import seqlab.nn as nn


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("C", [1, 7, 64, 259])
def test_matches_torch(torch, rng, affine, C):
    x = (rng.standard_normal((3, 5, C)) * 3 + 2).astype(np.float32)
    ours = nn.LayerNorm(C, eps=1e-5, elementwise_affine=affine)
    ref = torch.nn.LayerNorm(C, eps=1e-5, elementwise_affine=affine)
    if affine:
        w = rng.standard_normal(C).astype(np.float32)
        b = rng.standard_normal(C).astype(np.float32)
        ours.load_state_dict({"weight": w, "bias": b})
        ref.load_state_dict({"weight": torch.tensor(w), "bias": torch.tensor(b)})
    xs = seqlab.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    y, yt = ours(xs), ref(xt)
    g = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(g)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(xs.grad, xt.grad.numpy(), rtol=1e-4, atol=1e-4)
    if affine:
        np.testing.assert_allclose(ours.weight.grad, ref.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ours.bias.grad, ref.bias.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_two_normalized_axes_and_state_dict_to_torch(torch, rng):
    ours = nn.LayerNorm((4, 6))
    ours.weight.data[...] = rng.standard_normal((4, 6))
    ref = torch.nn.LayerNorm((4, 6))
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((5, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(ours(x).data, ref(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_constant_rows_are_finite(rng):
    x = np.full((2, 16), 3.0, dtype=np.float32)
    y = F.layer_norm(x, 16)
    np.testing.assert_array_equal(y.data, 0.0)


def test_bad_shapes(rng):
    with pytest.raises(ValueError, match="normalized_shape"):
        F.layer_norm(np.zeros((2, 5), np.float32), 4)
    ln = nn.LayerNorm(8)
    with pytest.raises(ValueError, match="normalized_shape"):
        ln(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="normalized_shape"):
        nn.LayerNorm(0)


def test_same_bits_for_any_thread_count(rng):
    x = rng.standard_normal((300, 200)).astype(np.float32)
    g = rng.standard_normal((300, 200)).astype(np.float32)
    results = []
    previous = seqlab.get_num_threads()
    try:
        for threads in (1, 2, 3):
            seqlab.set_num_threads(threads)
            ln = nn.LayerNorm(200)
            xs = seqlab.tensor(x, requires_grad=True)
            y = ln(xs)
            y.backward(g)
            results.append((y.data, xs.grad, ln.weight.grad, ln.bias.grad))
    finally:
        seqlab.set_num_threads(previous)
    for later in results[1:]:
        for a, b in zip(results[0], later):
            np.testing.assert_array_equal(a, b)


def test_many_rows_match_torch(torch, rng):
    # dweight and dbias sum 2,001 rows in blocks of rows, the blocks added in order
    # (the last block partial): against PyTorch's sums at 1 and 2 threads.
    x = (rng.standard_normal((2001, 128)) * 2 + 1).astype(np.float32)
    g = rng.standard_normal((2001, 128)).astype(np.float32)
    w = rng.standard_normal(128).astype(np.float32)
    ref = torch.nn.LayerNorm(128)
    ref.load_state_dict({"weight": torch.tensor(w), "bias": torch.zeros(128)})
    xt = torch.tensor(x, requires_grad=True)
    ref(xt).backward(torch.tensor(g))
    previous = seqlab.get_num_threads()
    try:
        for threads in (1, 2):
            seqlab.set_num_threads(threads)
            ln = nn.LayerNorm(128)
            ln.load_state_dict({"weight": w, "bias": np.zeros(128, np.float32)})
            xs = seqlab.tensor(x, requires_grad=True)
            ln(xs).backward(g)
            np.testing.assert_allclose(xs.grad, xt.grad.numpy(), rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(ln.weight.grad, ref.weight.grad.numpy(), rtol=1e-4, atol=2e-3)
            np.testing.assert_allclose(ln.bias.grad, ref.bias.grad.numpy(), rtol=1e-4, atol=2e-3)
    finally:
        seqlab.set_num_threads(previous)


def test_weight_gradient_without_input_gradient(rng):
    # x needs no gradient: only dweight and dbias, against a float64 reference.
    x = rng.standard_normal((70, 33)).astype(np.float32)
    g = rng.standard_normal((70, 33)).astype(np.float32)
    ln = nn.LayerNorm(33)
    ln(x).backward(g)
    x64 = x.astype(np.float64)
    xhat = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(ln.weight.grad, (g * xhat).sum(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ln.bias.grad, g.sum(0), rtol=1e-4, atol=1e-4)
