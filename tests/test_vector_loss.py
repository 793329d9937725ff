"""The next-vector loss against the same loss written in PyTorch, values and gradients."""

from __future__ import annotations

import numpy as np
import pytest

import seqlab
from seqlab.models.vectors.loss import next_vector_loss


def _torch_loss(torch, y, positions, targets, cw, aw, temp, negatives=None, mask=None, groups=None):
    F = torch.nn.functional
    p = F.normalize(y.reshape(-1, y.shape[-1])[positions], dim=1, eps=1e-12)
    t = torch.tensor(targets)
    loss = F.mse_loss(p, t) + cw * (1 - (p * t).sum(1)).mean()
    if aw > 0:
        logits = p @ t.T / temp
        if groups is not None:
            g = torch.tensor(groups)
            same = (g[:, None] == g[None, :]) & ~torch.eye(len(g), dtype=torch.bool)
            logits = logits.masked_fill(same, float("-inf"))
        if negatives is not None:
            neg = torch.einsum("md,mkd->mk", p, torch.tensor(negatives)) / temp
            neg = neg.masked_fill(~torch.tensor(mask), float("-inf"))
            logits = torch.cat([logits, neg], dim=1)
        loss = loss + aw * F.cross_entropy(logits, torch.arange(len(t)))
    return loss


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("weights", [(0.5, 0.05, 0.05), (0.0, 0.0, 1.0), (1.0, 1.0, 0.2)])
@pytest.mark.parametrize("with_negatives", [False, True])
@pytest.mark.parametrize("with_groups", [False, True])
def test_matches_torch(torch, rng, weights, with_negatives, with_groups):
    cw, aw, temp = weights
    y = rng.standard_normal((3, 5, 8)).astype(np.float32)
    positions = np.array([0, 1, 2, 5, 6, 10, 11, 12, 13])
    targets = _unit(rng.standard_normal((len(positions), 8)))
    negatives = mask = None
    if with_negatives:
        negatives = _unit(rng.standard_normal((len(positions), 3, 8)))
        mask = rng.random((len(positions), 3)) > 0.3
    groups = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2]) if with_groups else None
    yt = seqlab.tensor(y, requires_grad=True)
    loss = next_vector_loss(yt, positions, targets, cw, aw, temp, negatives, mask, groups)
    loss.backward()
    ty = torch.tensor(y, requires_grad=True)
    ref = _torch_loss(torch, ty, torch.tensor(positions), targets, cw, aw, temp, negatives, mask, groups)
    ref.backward()
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-5)
    np.testing.assert_allclose(yt.grad, ty.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert not yt.grad.reshape(-1, 8)[[3, 4, 7, 8, 9, 14]].any()  # unscored positions get nothing


def test_gradient_matches_finite_differences(rng):
    y = rng.standard_normal((2, 3, 4)).astype(np.float64)
    positions = np.array([0, 1, 3, 4])
    targets = _unit(rng.standard_normal((4, 4)))
    yt = seqlab.tensor(y.astype(np.float32), requires_grad=True)
    next_vector_loss(yt, positions, targets).backward()
    eps = 1e-3
    for idx in [(0, 0, 1), (1, 1, 3), (0, 1, 0)]:
        up, down = y.copy(), y.copy()
        up[idx] += eps
        down[idx] -= eps
        def loss_at(v):
            return next_vector_loss(seqlab.tensor(v.astype(np.float32)), positions, targets).item()

        numeric = (loss_at(up) - loss_at(down)) / (2 * eps)
        assert yt.grad[idx] == pytest.approx(numeric, abs=2e-3)


def test_target_shape_is_checked(rng):
    y = seqlab.tensor(rng.standard_normal((1, 3, 4)).astype(np.float32))
    with pytest.raises(ValueError, match=r"targets: expected shape \(3, 4\)"):
        next_vector_loss(y, np.arange(3), np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("weights", [(0.5, 0.2, 0.05), (0.0, 1.0, 0.1)])
def test_bank_negatives_match_torch(torch, rng, weights):
    """InfoNCE over a whole bank: each target ranked among every bank vector (the window's own
    vectors included), as the evaluation ranks it."""
    cw, aw, temp = weights
    y = rng.standard_normal((2, 4, 8)).astype(np.float32)
    positions = np.array([0, 1, 2, 4, 5])
    bank = _unit(rng.standard_normal((11, 8)))
    rows = np.array([3, 4, 5, 8, 9])
    yt = seqlab.tensor(y, requires_grad=True)
    loss = next_vector_loss(yt, positions, bank[rows], cw, aw, temp, bank=bank, target_rows=rows)
    loss.backward()
    F = torch.nn.functional
    ty = torch.tensor(y, requires_grad=True)
    p = F.normalize(ty.reshape(-1, 8)[torch.tensor(positions)], dim=1, eps=1e-12)
    t = torch.tensor(bank[rows])
    ref = (F.mse_loss(p, t) + cw * (1 - (p * t).sum(1)).mean()
           + aw * F.cross_entropy(p @ torch.tensor(bank).T / temp, torch.tensor(rows)))
    ref.backward()
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-5)
    np.testing.assert_allclose(yt.grad, ty.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_bank_needs_the_target_rows(rng):
    y = seqlab.tensor(rng.standard_normal((1, 3, 4)).astype(np.float32))
    bank = _unit(rng.standard_normal((6, 4)))
    with pytest.raises(ValueError, match=r"target_rows: expected shape \(3,\)"):
        next_vector_loss(y, np.arange(3), bank[:3], bank=bank)
    with pytest.raises(ValueError, match=r"bank: expected shape \(N, 4\)"):
        next_vector_loss(y, np.arange(3), bank[:3], bank=bank[:, :3], target_rows=np.arange(3))
