"""The autograd tape (seqlab.autograd) against torch and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import seqlab
from seqlab.autograd import Tensor


def _pair(torch, arr):
    return seqlab.tensor(arr, requires_grad=True), torch.tensor(arr, requires_grad=True)


def _check(ours_out, theirs_out, pairs, rng, rtol=1e-5, atol=1e-6):
    """Backpropagates the same random cotangent through both and compares values and grads."""
    g = rng.standard_normal(ours_out.shape).astype(np.float32)
    np.testing.assert_allclose(ours_out.data, theirs_out.detach().numpy(), rtol=rtol, atol=atol)
    ours_out.backward(g)
    theirs_out.backward(torch_tensor_like(theirs_out, g))
    for s, t in pairs:
        assert s.grad is not None and s.grad.shape == s.shape
        np.testing.assert_allclose(s.grad, t.grad.numpy(), rtol=rtol, atol=atol)


def torch_tensor_like(t, arr):
    import torch

    return torch.tensor(arr).reshape(t.shape)


BROADCAST_SHAPES = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((2, 1, 4), (3, 1)),
    ((1,), (2, 3)),
    ((), (5,)),
]


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize(("sa", "sb"), BROADCAST_SHAPES)
def test_binary_ops_with_broadcasting(torch, rng, op, sa, sb):
    a = rng.standard_normal(sa).astype(np.float32)
    b = (rng.uniform(0.5, 2.0, sb) * rng.choice([-1, 1], sb)).astype(np.float32)
    (sa_, ta), (sb_, tb) = _pair(torch, a), _pair(torch, b)
    fn = {
        "add": lambda x, y: x + y,
        "sub": lambda x, y: x - y,
        "mul": lambda x, y: x * y,
        "div": lambda x, y: x / y,
    }[op]
    _check(fn(sa_, sb_), fn(ta, tb), [(sa_, ta), (sb_, tb)], rng)


def test_ops_with_constants_and_reflected_operands(torch, rng):
    a = rng.uniform(0.5, 2.0, (3, 4)).astype(np.float32)
    c = rng.standard_normal(4).astype(np.float32)
    s, t = _pair(torch, a)
    out = (2.0 - s) * c + 1.0 / s - (-s) ** 2 + (s**0.5) + s.exp() * 0.1 + s.log() + (s - 1.5).abs()
    tout = (
        (2.0 - t) * torch.tensor(c)
        + 1.0 / t
        - (-t) ** 2
        + t**0.5
        + t.exp() * 0.1
        + t.log()
        + (t - 1.5).abs()
    )
    _check(out, tout, [(s, t)], rng)
    # ndarray on the left defers to Tensor's reflected op
    assert isinstance(c + s, Tensor)


@pytest.mark.parametrize(
    ("sa", "sb"),
    [
        ((3, 4), (4, 5)),
        ((2, 3, 4), (2, 4, 5)),
        ((2, 3, 4), (4, 5)),
        ((4,), (4, 5)),
        ((3, 4), (4,)),
        ((4,), (4,)),
        ((2, 3, 4), (4,)),
        ((4,), (2, 4, 5)),
        ((1, 3, 4), (2, 4, 2)),
    ],
)
def test_matmul_batched_and_1d(torch, rng, sa, sb):
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    (s1, t1), (s2, t2) = _pair(torch, a), _pair(torch, b)
    _check(s1 @ s2, t1 @ t2, [(s1, t1), (s2, t2)], rng, rtol=1e-5, atol=1e-5)


def test_matmul_errors():
    a = seqlab.tensor(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"matmul: shapes \(3, 4\) and \(5, 2\) do not align"):
        a @ np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match="at least 1 dimension"):
        a @ np.float32(2.0)


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_sum_and_mean_with_axes(torch, rng, axis, keepdims):
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    s, t = _pair(torch, a)
    dim = tuple(range(3)) if axis is None else axis
    _check(s.sum(axis, keepdims), t.sum(dim=dim, keepdim=keepdims), [(s, t)], rng)
    s, t = _pair(torch, a)
    _check(s.mean(axis, keepdims), t.mean(dim=dim, keepdim=keepdims), [(s, t)], rng)


def test_reduction_axis_errors():
    a = seqlab.tensor(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        a.sum(2)


@pytest.mark.parametrize("axes", [None, (1, 0, 2), (2, 0, 1), (0, -1, 1), (-1, -3, -2)])
def test_transpose_and_reshape(torch, rng, axes):
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    s, t = _pair(torch, a)
    tperm = t.permute(*reversed(range(3))) if axes is None else t.permute(*axes)
    out = s.transpose(axes) if axes is not None else s.T
    _check(out.reshape(-1, 2), tperm.reshape(-1, 2), [(s, t)], rng)


def test_reshape_and_transpose_errors():
    a = seqlab.tensor(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\) into"):
        a.reshape(4, 2)
    with pytest.raises(ValueError, match="not a permutation"):
        a.transpose(0, 0)


@pytest.mark.parametrize(
    "index",
    [
        1,
        (slice(None), 2),
        (slice(0, 3, 2), slice(None, None, -1)),
        np.array([0, 2, 2, 0, 2]),  # repeated fancy indices accumulate
        (np.array([1, 1, 0]), np.array([3, 3, 0])),
        (Ellipsis, None, 1),
    ],
)
def test_indexing(torch, rng, index):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    s, t = _pair(torch, a)
    tindex = tuple(
        torch.tensor(i) if isinstance(i, np.ndarray) else i
        for i in (index if isinstance(index, tuple) else (index,))
    )
    if isinstance(index, tuple) and isinstance(index[1], slice) and index[1].step == -1:
        tout = t[0:3:2].flip(1)  # torch has no negative-step slices
    else:
        tout = t[tindex if isinstance(index, tuple) else tindex[0]]
    _check(s[index], tout, [(s, t)], rng)


def test_indexing_with_a_tensor_and_a_boolean_mask(rng):
    a = rng.standard_normal((5, 2)).astype(np.float32)
    s = seqlab.tensor(a, requires_grad=True)
    idx = seqlab.tensor(np.array([4, 4, 1]))
    s[idx].sum().backward()
    np.testing.assert_array_equal(s.grad, np.array([[0, 0], [1, 1], [0, 0], [0, 0], [2, 2]]))
    s2 = seqlab.tensor(a, requires_grad=True)
    mask = a > 0
    s2[mask].sum().backward()
    np.testing.assert_array_equal(s2.grad, mask.astype(np.float32))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate_and_stack(torch, rng, axis):
    arrs = [rng.standard_normal((2, k + 1)).astype(np.float32) for k in range(3)]
    pairs = [_pair(torch, a) for a in arrs]
    if axis == 0:
        arrs = [rng.standard_normal((k + 1, 3)).astype(np.float32) for k in range(3)]
        pairs = [_pair(torch, a) for a in arrs]
    _check(
        seqlab.concatenate([p[0] for p in pairs], axis=axis),
        torch.cat([p[1] for p in pairs], dim=axis),
        pairs,
        rng,
    )
    same = [_pair(torch, rng.standard_normal((2, 3)).astype(np.float32)) for _ in range(3)]
    _check(
        seqlab.stack([p[0] for p in same], axis=axis),
        torch.stack([p[1] for p in same], dim=axis),
        same,
        rng,
    )


def test_concatenate_and_stack_errors():
    a = seqlab.tensor(np.zeros((2, 3), np.float32))
    b = seqlab.tensor(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="do not fit along axis 0"):
        seqlab.concatenate([a, b], axis=0)
    with pytest.raises(ValueError, match="same shape"):
        seqlab.stack([a, b])
    with pytest.raises(ValueError, match="at least one"):
        seqlab.stack([])


def test_gradients_accumulate_over_shared_subexpressions_and_calls(rng):
    a = rng.standard_normal(4).astype(np.float32)
    x = seqlab.tensor(a, requires_grad=True)
    y = x * x  # x used twice by one op
    z = y + y * 3.0  # y used twice
    z.sum().backward()
    np.testing.assert_allclose(x.grad, 8.0 * a, rtol=1e-6)
    (x * 2.0).sum().backward()  # a second backward adds into the leaf's grad
    np.testing.assert_allclose(x.grad, 8.0 * a + 2.0, rtol=1e-6)


def test_finite_differences_of_a_composite_function(rng):
    a = rng.uniform(0.5, 1.5, (3, 4)).astype(np.float64)
    w = rng.standard_normal((4, 2)).astype(np.float64)

    def f_np(v):
        h = np.tanh(v @ w)
        return float(((h * h).sum(axis=0) / (1.0 + v.mean())).sum())

    x = seqlab.tensor(a.astype(np.float32), requires_grad=True)
    h = seqlab.functional.tanh(x @ w.astype(np.float32))
    ((h * h).sum(axis=0) / (1.0 + x.mean())).sum().backward()
    eps = 1e-6
    num = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        up, dn = a.copy(), a.copy()
        up[i] += eps
        dn[i] -= eps
        num[i] = (f_np(up) - f_np(dn)) / (2 * eps)
    np.testing.assert_allclose(x.grad, num, rtol=1e-3, atol=1e-4)


def test_no_grad_and_detach(rng):
    x = seqlab.tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True)
    with seqlab.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.is_leaf
    assert seqlab.is_grad_enabled()
    d = x.detach()
    assert not d.requires_grad and np.shares_memory(d.data, x.data)
    z = (x * 3.0 + d * 100.0).sum()
    z.backward()
    np.testing.assert_allclose(x.grad, np.full(3, 3.0))

    @seqlab.no_grad()
    def inside():
        return seqlab.is_grad_enabled()

    assert inside() is False and seqlab.is_grad_enabled()


def test_backward_errors():
    x = seqlab.tensor(np.ones(3, np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match="does not require grad"):
        seqlab.tensor(np.ones(3, np.float32)).sum().backward()
    with pytest.raises(ValueError, match=r"grad must be given for a tensor of shape \(3,\)"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match=r"grad has shape \(2,\), expected \(3,\)"):
        (x * 2.0).backward(np.ones(2, np.float32))
    with pytest.raises(TypeError, match="only float32 tensors can require gradients"):
        seqlab.tensor(np.arange(3), requires_grad=True)
    with pytest.raises(TypeError, match="arithmetic needs float32"):
        x + seqlab.tensor(np.arange(3))
    with pytest.raises(ValueError, match="item"):
        x.item()


def test_tensor_conversions():
    t = seqlab.tensor([[1, 2], [3, 4]])
    assert t.dtype == np.int64 and t.shape == (2, 2) and len(t) == 2
    f = seqlab.tensor(np.arange(4.0).reshape(2, 2).T)  # float64, non-contiguous
    assert f.dtype == np.float32 and f.data.flags.c_contiguous
    np.testing.assert_array_equal(f.numpy(), [[0, 2], [1, 3]])
    assert seqlab.tensor(2.5).item() == 2.5


@pytest.mark.parametrize("keepdims", [False, True])
def test_square_and_full_mean_are_single_nodes_with_exact_gradients(torch, rng, keepdims):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    sx = seqlab.tensor(x, requires_grad=True)
    sq = sx * sx
    assert sq._inputs == (sx,)  # one input: the square's backward runs once
    loss = sq.mean(keepdims=keepdims)
    assert loss._inputs == (sq,)
    loss.backward(np.ones(loss.shape, np.float32))
    tx = torch.tensor(x, requires_grad=True)
    tl = (tx * tx).mean()
    tl.backward()
    np.testing.assert_allclose(loss.data.reshape(()), tl.item(), rtol=1e-6)
    np.testing.assert_allclose(sx.grad, tx.grad.numpy(), rtol=1e-6, atol=1e-7)
    # 2 g x is g x + g x exactly: the same gradient as two separate operands
    sy = seqlab.tensor(x, requires_grad=True)
    (sy * sy).backward(np.full(x.shape, 0.5, np.float32))
    np.testing.assert_array_equal(sy.grad, x * np.float32(0.5) + x * np.float32(0.5))


def test_large_sums_run_on_the_pool_with_numpys_bits(rng):
    """Residual sums and the gradients of a tensor used twice, above the size where
    ``_core.add_forward`` takes over from NumPy: the same bits at 1 and 2 threads, the
    same gradient as the small (NumPy) path; mismatched shapes still broadcast."""
    from seqlab import _core

    a = rng.standard_normal((4, 130, 128)).astype(np.float32)  # 66,560 floats: the pool's path
    b = rng.standard_normal((4, 130, 128)).astype(np.float32)
    previous = seqlab.get_num_threads()
    try:
        for threads in (1, 2):
            seqlab.set_num_threads(threads)
            np.testing.assert_array_equal(_core.add_forward(a, b), a + b)
            x = Tensor(a, requires_grad=True)
            h = x * 1.0
            y = h * 2.0 + h  # h's gradient: the sum of two (4, 130, 128) arrays
            y.backward(b)
            np.testing.assert_array_equal(y.data, a * np.float32(2.0) + a)
            np.testing.assert_array_equal(x.grad, b * np.float32(2.0) + b)
    finally:
        seqlab.set_num_threads(previous)
    np.testing.assert_array_equal((Tensor(a) + Tensor(b[0])).data, a + b[0])  # broadcast: NumPy's path
    with pytest.raises(ValueError, match="other"):
        _core.add_forward(a, b[:, :3])
