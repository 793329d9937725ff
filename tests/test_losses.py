"""The fused masked cosine + MSE loss against a torch composition
(cosine_similarity + mse, masked): values and gradients, reductions, zero vectors."""

from __future__ import annotations

import numpy as np
import pytest

import seqlab
from seqlab import losses


def torch_hybrid(torch, pred, target, lengths, cw, mw, temperature, reduction):
    F = torch.nn.functional
    cos = F.cosine_similarity(pred, target, dim=-1, eps=1e-8)
    mse = ((pred - target) ** 2).mean(dim=-1)
    tokens = cw * (1 - cos) / temperature + mw * mse
    steps = pred.shape[1]
    mask = torch.ones(tokens.shape, dtype=torch.bool)
    if lengths is not None:
        mask = torch.arange(steps)[None, :] < torch.from_numpy(lengths)[:, None]
    tokens = torch.where(mask, tokens, torch.zeros_like(tokens))
    if reduction == "none":
        return tokens
    if reduction == "sum":
        return tokens.sum()
    return tokens.sum() / mask.sum()


def data(rng, shape=(4, 7, 19)):
    """Random pred and target with a zero and a tiny vector (the eps clamps) when room."""
    pred = rng.standard_normal(shape).astype(np.float32)
    target = rng.standard_normal(shape).astype(np.float32)
    if shape[0] >= 4:
        pred[1, 2] = 0.0
        target[2, 0] = 0.0
        pred[3, 1] = 1e-10
    return pred, target


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weights", [(0.9, 0.1, 1.0), (0.7, 0.3, 0.5), (1.0, 0.0, 2.0), (0.0, 1.0, 1.0)])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_torch(torch, rng, reduction, weights, masked):
    pred, target = data(rng)
    lengths = np.array([7, 3, 1, 5]) if masked else None
    cw, mw, temp = weights
    p = seqlab.tensor(pred, requires_grad=True)
    y = seqlab.tensor(target, requires_grad=True)
    out = losses.cosine_mse_loss(p, y, lengths, cosine_weight=cw, mse_weight=mw,
                                 temperature=temp, reduction=reduction)
    pt = torch.from_numpy(pred).requires_grad_()
    yt = torch.from_numpy(target).requires_grad_()
    ref = torch_hybrid(torch, pt, yt, lengths, cw, mw, temp, reduction)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-5, atol=1e-6)
    upstream = rng.standard_normal(out.shape).astype(np.float32) if out.shape else np.float32(1.7)
    out.backward(np.asarray(upstream, dtype=np.float32))
    ref.backward(torch.as_tensor(upstream))
    np.testing.assert_allclose(p.grad, pt.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(y.grad, yt.grad.numpy(), rtol=1e-4, atol=1e-6)
    if masked:
        assert not p.grad[2, 1:].any() and not y.grad[1, 3:].any()


def test_special_cases_are_the_hybrid(torch, rng):
    pred, target = data(rng)
    lengths = np.array([7, 2, 4, 6])
    cos = losses.cosine_loss(pred, target, lengths, temperature=0.5).item()
    mse = losses.mse_loss(pred, target, lengths).item()
    hybrid = losses.cosine_mse_loss(pred, target, lengths, 0.9, 0.1, 0.5).item()
    assert hybrid == pytest.approx(0.9 * cos + 0.1 * mse, rel=1e-5)
    pt, yt = torch.from_numpy(pred), torch.from_numpy(target)
    keep = torch.arange(7)[None, :] < torch.from_numpy(lengths)[:, None]
    assert mse == pytest.approx(torch.nn.functional.mse_loss(pt[keep], yt[keep]).item(), rel=1e-5)
    expected_cos = (1 - torch.nn.functional.cosine_similarity(pt[keep], yt[keep], dim=-1)).mean() / 0.5
    assert cos == pytest.approx(expected_cos.item(), rel=1e-5)


def test_identical_vectors_give_zero_and_large_shapes_with_threads(rng):
    pred = rng.standard_normal((32, 50, 300)).astype(np.float32)
    assert losses.cosine_mse_loss(pred, pred).item() == pytest.approx(0.0, abs=1e-6)
    target = rng.standard_normal((32, 50, 300)).astype(np.float32)
    previous = seqlab.get_num_threads()
    try:
        seqlab.set_num_threads(1)
        one = losses.cosine_mse_loss(pred, target).item()
        seqlab.set_num_threads(2)
        two = losses.cosine_mse_loss(pred, target).item()
    finally:
        seqlab.set_num_threads(previous)
    assert one == two
    dot = (pred * target).sum(-1) / np.linalg.norm(pred, axis=-1) / np.linalg.norm(target, axis=-1)
    expected = (0.9 * (1 - dot) + 0.1 * ((pred - target) ** 2).mean(-1)).mean()
    assert one == pytest.approx(float(expected), rel=1e-5)


def test_no_real_tokens_gives_zero_mean(rng):
    pred, target = data(rng, (2, 3, 5))
    p = seqlab.tensor(pred, requires_grad=True)
    out = losses.cosine_mse_loss(p, target, np.array([0, 0]))
    assert out.item() == 0.0
    out.backward()
    assert not p.grad.any()


def test_bad_input(rng):
    pred, target = data(rng, (2, 3, 5))
    with pytest.raises(ValueError, match="target"):
        losses.cosine_mse_loss(pred, target[:, :2])
    with pytest.raises(ValueError, match="pred"):
        losses.cosine_mse_loss(pred[0], target[0])
    with pytest.raises(ValueError, match="lengths"):
        losses.cosine_mse_loss(pred, target, np.array([1, 4]))
    with pytest.raises(ValueError, match="lengths"):
        losses.cosine_mse_loss(pred, target, np.array([1, 2, 3]))
    with pytest.raises(TypeError, match="lengths"):
        losses.cosine_mse_loss(pred, target, np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="temperature"):
        losses.cosine_mse_loss(pred, target, temperature=0.0)
    with pytest.raises(ValueError, match="reduction"):
        losses.cosine_mse_loss(pred, target, reduction="max")
