"""Dense kernels (linear, embedding, activations, softmax, dropout) against torch."""

from __future__ import annotations

import math

import numpy as np
import pytest

import seqlab
from conftest import central_difference
from seqlab import _core
from seqlab import functional as F


def _close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


# ---------------------------------------------------------------- linear
@pytest.mark.parametrize("x_shape", [(4,), (5, 4), (2, 3, 4), (1, 1, 1, 4)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_torch(torch, rng, x_shape, with_bias):
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    g = rng.standard_normal((*x_shape[:-1], 3)).astype(np.float32)

    sx = seqlab.tensor(x, requires_grad=True)
    sw = seqlab.nn.Parameter(w)
    sb = seqlab.nn.Parameter(b) if with_bias else None
    y = F.linear(sx, sw, sb)
    y.backward(g)

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if with_bias else None
    ty = torch.nn.functional.linear(tx, tw, tb)
    ty.backward(torch.tensor(g))

    assert y.shape == tuple(ty.shape)
    _close(y.data, ty.detach().numpy())
    _close(sx.grad, tx.grad.numpy())
    _close(sw.grad, tw.grad.numpy())
    if with_bias:
        _close(sb.grad, tb.grad.numpy())


def test_linear_large_rows_parallel_bias_grad(torch, rng):
    x = rng.standard_normal((4096, 40)).astype(np.float32)
    w = rng.standard_normal((130, 40)).astype(np.float32)
    b = rng.standard_normal(130).astype(np.float32)
    g = rng.standard_normal((4096, 130)).astype(np.float32)
    gw = np.zeros_like(w)
    gb = np.zeros_like(b)
    gx = _core.linear_backward(g, x, w, gw, gb, True)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    torch.nn.functional.linear(tx, tw, tb).backward(torch.tensor(g))
    _close(gx, tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    _close(gw, tw.grad.numpy(), rtol=1e-4, atol=1e-3)
    _close(gb, tb.grad.numpy(), rtol=1e-4, atol=1e-3)


def test_linear_backward_accumulates_parameter_grads(rng):
    x = rng.standard_normal((6, 4)).astype(np.float32)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    g = rng.standard_normal((6, 3)).astype(np.float32)
    gw = np.ones_like(w)
    gb = np.ones(3, dtype=np.float32)
    assert _core.linear_backward(g, x, w, gw, gb, False) is None
    _close(gw, 1.0 + g.T @ x)
    _close(gb, 1.0 + g.sum(axis=0))


FUSED = [
    ("relu", lambda t, y: t.relu(y)),
    ("gelu", lambda t, y: t.nn.functional.gelu(y)),
    ("gelu_tanh", lambda t, y: t.nn.functional.gelu(y, approximate="tanh")),
    ("none", lambda t, y: y),
]


@pytest.mark.parametrize(("activation", "theirs"), FUSED, ids=[f[0] for f in FUSED])
@pytest.mark.parametrize(("x_shape", "out"), [((5, 4), 3), ((2, 3, 17), 33), ((3000, 24), 1500)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_activation_matches_torch(torch, rng, activation, theirs, x_shape, out, with_bias):
    # (3000, 24) -> 1500: several row blocks per thread and both threads' parts
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal((out, x_shape[-1])) / np.sqrt(x_shape[-1])).astype(np.float32)
    b = rng.standard_normal(out).astype(np.float32)
    g = rng.standard_normal((*x_shape[:-1], out)).astype(np.float32)
    sx = seqlab.tensor(x, requires_grad=True)
    sw = seqlab.nn.Parameter(w)
    sb = seqlab.nn.Parameter(b) if with_bias else None
    y = F.linear_activation(sx, sw, sb, activation)
    y.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if with_bias else None
    ty = theirs(torch, torch.nn.functional.linear(tx, tw, tb))
    ty.backward(torch.tensor(g))
    assert y.shape == tuple(ty.shape)
    _close(y.data, ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    _close(sx.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    _close(sw.grad, tw.grad.numpy(), rtol=1e-4, atol=1e-3)
    if with_bias:
        _close(sb.grad, tb.grad.numpy(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_linear_activation_equals_the_unfused_ops_bit_for_bit(rng, activation):
    x = rng.standard_normal((700, 40)).astype(np.float32)
    w = rng.standard_normal((90, 40)).astype(np.float32)
    b = rng.standard_normal(90).astype(np.float32)
    g = rng.standard_normal((700, 90)).astype(np.float32)
    grads = []
    outs = []
    for fused in (True, False):
        sx = seqlab.tensor(x, requires_grad=True)
        sw, sb = seqlab.nn.Parameter(w), seqlab.nn.Parameter(b)
        if fused:
            y = F.linear_activation(sx, sw, sb, activation)
        elif activation == "relu":
            y = F.relu(F.linear(sx, sw, sb))
        else:
            y = F.gelu(F.linear(sx, sw, sb), "tanh" if activation == "gelu_tanh" else "none")
        y.backward(g)
        outs.append(y.data)
        grads.append((sx.grad, sw.grad, sb.grad))
    np.testing.assert_array_equal(outs[0], outs[1])
    for a, c in zip(grads[0], grads[1], strict=True):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_linear_activation_finite_differences(rng, activation):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    w = rng.standard_normal((4, 5)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    c = rng.standard_normal((3, 4)).astype(np.float32)  # loss = sum(c * y)

    def loss(xv, wv, bv):
        y = F.linear_activation(xv.astype(np.float32), seqlab.nn.Parameter(wv.astype(np.float32)),
                                seqlab.nn.Parameter(bv.astype(np.float32)), activation)
        return float((y.data.astype(np.float64) * c).sum())

    sx = seqlab.tensor(x, requires_grad=True)
    sw, sb = seqlab.nn.Parameter(w), seqlab.nn.Parameter(b)
    F.linear_activation(sx, sw, sb, activation).backward(c)
    eps = 1e-2
    for arr, grad in ((x, sx.grad), (w, sw.grad), (b, sb.grad)):
        flat = arr.reshape(-1)
        for i in range(flat.size):
            if activation == "relu" and np.any(np.abs(x @ w.T + b) < 2 * eps):
                break  # a kink within the step
            numeric = central_difference(lambda: loss(x, w, b), flat, i, eps)
            np.testing.assert_allclose(grad.reshape(-1)[i], numeric, rtol=2e-2, atol=2e-3)


def test_linear_activation_bad_arguments(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    w = seqlab.nn.Parameter(rng.standard_normal((2, 4)).astype(np.float32))
    with pytest.raises(ValueError, match="activation: expected one of"):
        F.linear_activation(x, w, None, "swish")
    with pytest.raises(ValueError, match="activation: expected 'none', 'relu'"):
        _core.linear_forward(x, w.data, None, "swish")
    with pytest.raises(ValueError, match="pre: gelu's backward needs"):
        _core.linear_forward(x, w.data, None, "gelu")
    with pytest.raises(ValueError, match=r"pre: expected shape \(3, 2\)"):
        _core.linear_forward(x, w.data, None, "gelu", np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="saved: the activation's backward needs"):
        _core.linear_backward(np.zeros((3, 2), np.float32), x, w.data, None, None, True, "relu")
    with pytest.raises(ValueError, match=r"saved: expected shape \(3, 2\)"):
        _core.linear_backward(np.zeros((3, 2), np.float32), x, w.data, None, None, True, "relu",
                              np.zeros((2, 3), np.float32))


def test_linear_module_init_and_torch_state_dict_round_trip(torch, rng):
    seqlab.manual_seed(3)
    lin = seqlab.nn.Linear(50, 7)
    bound = 1.0 / np.sqrt(50)
    assert lin.weight.shape == (7, 50) and lin.bias.shape == (7,)
    assert np.abs(lin.weight.data).max() <= bound + 1e-7
    assert np.abs(lin.weight.data).max() > 0.8 * bound  # uniform over the whole range
    assert np.abs(lin.bias.data).max() <= bound + 1e-7
    t = torch.nn.Linear(50, 7)
    t.load_state_dict({k: torch.tensor(v) for k, v in lin.state_dict().items()})
    x = rng.standard_normal((3, 50)).astype(np.float32)
    _close(lin(x).data, t(torch.tensor(x)).detach().numpy())
    t2 = torch.nn.Linear(50, 7)
    lin.load_state_dict({k: v.detach().numpy() for k, v in t2.state_dict().items()})
    _close(lin(x).data, t2(torch.tensor(x)).detach().numpy())


def test_linear_without_bias_has_no_bias_parameter():
    lin = seqlab.nn.Linear(3, 2, bias=False)
    assert lin.bias is None
    assert list(lin.state_dict()) == ["weight"]


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "message"),
    [
        ((5, 3), (2, 4), r"input: expected last dimension 4 .* got shape \(5, 3\)"),
        ((5, 4), (2, 4, 1), r"weight: expected shape \(\*, \*\), got \(2, 4, 1\)"),
    ],
)
def test_linear_rejects_bad_shapes(x_shape, w_shape, message):
    x = np.zeros(x_shape, dtype=np.float32)
    w = np.zeros(w_shape, dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        _core.linear_forward(x, w, None)


def test_linear_rejects_bad_dtypes_and_layouts():
    w = np.zeros((2, 4), dtype=np.float32)
    with pytest.raises(TypeError, match="input: expected dtype float32, got float64"):
        _core.linear_forward(np.zeros((3, 4)), w, None)
    with pytest.raises(TypeError, match="weight: expected dtype float32, got int64"):
        _core.linear_forward(np.zeros((3, 4), np.float32), np.zeros((2, 4), np.int64), None)
    with pytest.raises(ValueError, match=r"bias: expected shape \(2,\), got \(3,\)"):
        _core.linear_forward(np.zeros((3, 4), np.float32), w, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="input: .* not C-contiguous"):
        _core.linear_forward(np.zeros((4, 3), np.float32).T, w, None)
    with pytest.raises(ValueError, match="grad_weight: array is read-only"):
        gw = np.zeros((2, 4), np.float32)
        gw.flags.writeable = False
        _core.linear_backward(np.zeros((3, 2), np.float32), np.zeros((3, 4), np.float32), w, gw)
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(3, 2,?\), got \(3, 5\)"):
        _core.linear_backward(np.zeros((3, 5), np.float32), np.zeros((3, 4), np.float32), w)


def test_linear_module_converts_ndarray_and_rejects_int_input():
    lin = seqlab.nn.Linear(4, 2)
    out = lin(np.ones((3, 4)))  # float64 ndarray -> float32 tensor
    assert out.shape == (3, 2) and out.dtype == np.float32
    with pytest.raises(TypeError, match="input: expected float32"):
        lin(np.ones((3, 4), dtype=np.int64))


# ---------------------------------------------------------------- embedding
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_torch(torch, rng, padding_idx):
    idx = np.array([[0, 2, 2, 5], [5, 1, 2, 0], [6, 6, 6, 3]], dtype=np.int64)
    seqlab.manual_seed(1)
    emb = seqlab.nn.Embedding(7, 5, padding_idx=padding_idx)
    if padding_idx is not None:
        assert np.all(emb.weight.data[padding_idx] == 0.0)
    t = torch.nn.Embedding(7, 5, padding_idx=padding_idx)
    t.load_state_dict({"weight": torch.tensor(emb.weight.data)})
    g = rng.standard_normal((3, 4, 5)).astype(np.float32)
    out = emb(idx)
    out.backward(g)
    tout = t(torch.tensor(idx))
    tout.backward(torch.tensor(g))
    assert out.shape == (3, 4, 5)
    _close(out.data, tout.detach().numpy(), rtol=0, atol=0)
    _close(emb.weight.grad, t.weight.grad.numpy())


def test_embedding_init_is_standard_normal():
    emb = seqlab.nn.Embedding(2000, 50)
    assert abs(float(emb.weight.data.mean())) < 0.01
    assert abs(float(emb.weight.data.std()) - 1.0) < 0.01


def test_embedding_large_backward_is_deterministic_and_correct(rng):
    idx = rng.integers(0, 50, size=20000).astype(np.int64)
    g = rng.standard_normal((20000, 96)).astype(np.float32)
    ref = np.zeros((50, 96), dtype=np.float64)
    np.add.at(ref, idx, g)
    gw1 = np.zeros((50, 96), dtype=np.float32)
    gw2 = np.zeros((50, 96), dtype=np.float32)
    _core.embedding_backward(g, idx, gw1, -1)
    _core.embedding_backward(g, idx, gw2, -1)
    _close(gw1, ref, rtol=1e-4, atol=1e-4)
    assert np.array_equal(gw1, gw2)


@pytest.mark.parametrize("bad", [7, -1, 100])
def test_embedding_out_of_range_index_names_input_and_index(bad):
    emb = seqlab.nn.Embedding(7, 3)
    idx = np.array([[1, 2], [bad, 0]])
    with pytest.raises(ValueError, match=rf"input: index {bad} at flat position 2 is out of range"):
        emb(idx)


def test_embedding_rejects_float_indices_and_bad_arguments():
    emb = seqlab.nn.Embedding(7, 3)
    with pytest.raises(TypeError, match="input: expected integer indices"):
        emb(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="padding_idx"):
        seqlab.nn.Embedding(7, 3, padding_idx=7)
    with pytest.raises(ValueError, match="embedding_dim"):
        seqlab.nn.Embedding(7, 0)
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(2, 3\), got \(2, 4\)"):
        _core.embedding_backward(
            np.zeros((2, 4), np.float32), np.zeros(2, np.int64), np.zeros((7, 3), np.float32), -1
        )


# ---------------------------------------------------------------- activations
ACTIVATIONS = [
    ("sigmoid", lambda x: F.sigmoid(x), lambda t, x: t.sigmoid(x)),
    ("tanh", lambda x: F.tanh(x), lambda t, x: t.tanh(x)),
    ("relu", lambda x: F.relu(x), lambda t, x: t.relu(x)),
    ("gelu", lambda x: F.gelu(x), lambda t, x: t.nn.functional.gelu(x)),
    (
        "gelu_tanh",
        lambda x: F.gelu(x, "tanh"),
        lambda t, x: t.nn.functional.gelu(x, approximate="tanh"),
    ),
]


@pytest.mark.parametrize(("name", "ours", "theirs"), ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
@pytest.mark.parametrize("shape", [(1,), (3, 7), (2, 5, 37), (70001,)])
def test_activations_match_torch(torch, rng, name, ours, theirs, shape):
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    sx = seqlab.tensor(x, requires_grad=True)
    y = ours(sx)
    y.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(torch, tx)
    ty.backward(torch.tensor(g))
    # torch's float32 GELU loses ~1e-6 absolute to cancellation in 1 + erf(x) for x << 0
    _close(y.data, ty.detach().numpy(), rtol=1e-5, atol=2e-6)
    _close(sx.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_activation_extremes_are_finite():
    x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], dtype=np.float32)
    for fn in (F.sigmoid, F.tanh, F.relu, F.gelu, lambda v: F.gelu(v, "tanh")):
        assert np.all(np.isfinite(fn(x).data))
    _close(F.sigmoid(x).data[[0, -1]], [0.0, 1.0])
    _close(F.tanh(x).data[[0, -1]], [-1.0, 1.0])


def test_activation_modules_and_bad_arguments(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    _close(seqlab.nn.ReLU()(x).data, np.maximum(x, 0))
    _close(seqlab.nn.Tanh()(x).data, np.tanh(x))
    _close(seqlab.nn.Sigmoid()(x).data, 1 / (1 + np.exp(-x)))
    with pytest.raises(ValueError, match="approximate"):
        seqlab.nn.GELU("fast")
    with pytest.raises(ValueError, match="approximate: expected 'none' or 'tanh'"):
        _core.gelu_forward(x, "fast")
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(4, 3\)"):
        _core.tanh_backward(np.zeros((3, 4), np.float32), x)


# ---------------------------------------------------------------- softmax
@pytest.mark.parametrize(
    ("shape", "dim"), [((5,), -1), ((4, 9), -1), ((3, 4, 33), 2), ((3, 4, 5), 1), ((3, 4, 5), 0)]
)
def test_softmax_matches_torch(torch, rng, shape, dim):
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    sx = seqlab.tensor(x, requires_grad=True)
    y = seqlab.nn.Softmax(dim)(sx)
    y.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.softmax(tx, dim)
    ty.backward(torch.tensor(g))
    _close(y.data, ty.detach().numpy())
    _close(sx.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_softmax_is_stable_for_large_inputs_and_many_rows(torch, rng):
    x = (rng.standard_normal((3000, 17)) * 10 + 1000).astype(np.float32)
    y = F.softmax(x).data
    assert np.all(np.isfinite(y))
    _close(y.sum(axis=-1), np.ones(3000), rtol=1e-5)
    _close(y, torch.softmax(torch.tensor(x), -1).numpy())


def test_softmax_rejects_bad_dim():
    with pytest.raises(ValueError, match="dim 2 is out of range"):
        F.softmax(np.zeros((2, 3), np.float32), dim=2)


# ---------------------------------------------------------------- dropout
def test_dropout_training_mask_and_gradient():
    seqlab.manual_seed(5)
    x = seqlab.tensor(np.ones((200, 100), np.float32), requires_grad=True)
    d = seqlab.nn.Dropout(0.3)
    y = d(x)
    kept = y.data != 0
    assert abs(kept.mean() - 0.7) < 0.02
    _close(y.data[kept], 1.0 / 0.7)
    y.backward(np.full((200, 100), 2.0, np.float32))
    _close(x.grad, np.where(kept, 2.0 / 0.7, 0.0))


def test_dropout_is_seeded_and_identity_in_eval():
    x = np.ones((50, 50), np.float32)
    d = seqlab.nn.Dropout(0.5)
    seqlab.manual_seed(9)
    a = d(x).data
    seqlab.manual_seed(9)
    b = d(x).data
    assert np.array_equal(a, b)
    d.eval()
    assert np.array_equal(d(x).data, x)
    assert np.all(seqlab.nn.Dropout(1.0)(x).data == 0)
    with pytest.raises(ValueError, match="p must be"):
        seqlab.nn.Dropout(1.5)


# ---------------------------------------------------------------- Sequential
def test_sequential_matches_torch_and_indexes(torch, rng):
    seqlab.manual_seed(2)
    model = seqlab.nn.Sequential(
        seqlab.nn.Linear(6, 8), seqlab.nn.GELU("tanh"), seqlab.nn.Linear(8, 3), seqlab.nn.Softmax()
    )
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(model) == 4 and isinstance(model[-1], seqlab.nn.Softmax)
    assert isinstance(model[1:3], seqlab.nn.Sequential) and len(model[1:3]) == 2
    tmodel = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.GELU("tanh"), torch.nn.Linear(8, 3), torch.nn.Softmax(-1)
    )
    tmodel.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    x = rng.standard_normal((4, 6)).astype(np.float32)
    g = rng.standard_normal((4, 3)).astype(np.float32)
    model(x).backward(g)
    tmodel(torch.tensor(x)).backward(torch.tensor(g))
    for name, p in model.named_parameters():
        _close(p.grad, dict(tmodel.named_parameters())[name].grad.numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(IndexError):
        model[4]
    with pytest.raises(TypeError, match="argument 0"):
        seqlab.nn.Sequential("relu")


def test_gelu_matches_float64_reference_including_far_tail():
    import math

    x = np.linspace(-12, 6, 4001).astype(np.float32)
    ref = np.array([0.5 * v * math.erfc(-v / math.sqrt(2.0)) for v in x.astype(np.float64)])
    mask = np.abs(ref) > 1e-30
    np.testing.assert_allclose(F.gelu(x).data[mask], ref[mask], rtol=2e-5)
    # derivative by central differences in float64 on the reference
    h = 1e-4
    xd = x.astype(np.float64)
    up = np.array([0.5 * v * math.erfc(-v / math.sqrt(2.0)) for v in xd + h])
    dn = np.array([0.5 * v * math.erfc(-v / math.sqrt(2.0)) for v in xd - h])
    t = seqlab.tensor(x, requires_grad=True)
    F.gelu(t).backward(np.ones_like(x))
    np.testing.assert_allclose(t.grad, (up - dn) / (2 * h), rtol=1e-4, atol=1e-6)


def test_strided_upstream_gradients_reach_the_kernels(torch, rng):
    # transpose and stack backward hand strided views to the dense ops' backward
    x = rng.standard_normal((4, 6)).astype(np.float32)
    w = rng.standard_normal((5, 6)).astype(np.float32)
    sx, sw = seqlab.tensor(x, requires_grad=True), seqlab.nn.Parameter(w)
    h = F.tanh(F.gelu(F.sigmoid(F.relu(F.linear(sx, sw)))))
    out = seqlab.stack([F.softmax(h).T, h.T], axis=1)
    g = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(g)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    th = torch.tanh(
        torch.nn.functional.gelu(torch.sigmoid(torch.relu(torch.nn.functional.linear(tx, tw))))
    )
    tout = torch.stack([torch.softmax(th, -1).T, th.T], dim=1)
    tout.backward(torch.tensor(g))
    _close(out.data, tout.detach().numpy())
    _close(sx.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-6)
    _close(sw.grad, tw.grad.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("op", ["sigmoid", "tanh", "relu", "gelu", "add_relu", "softmax"])
def test_zero_dimensional_tensors_have_gradients(op):
    """Found by the property tests: the upstream gradient of a 0-d output was made (1,)
    before the kernel (np.ascontiguousarray promotes 0-d), which refused it with
    ``grad_output: expected shape ()``; indexing a scalar out of a tensor (``t[0]``) gave
    shape (1,) and its backward failed in ``np.add.at``."""
    x = seqlab.tensor(np.float32(0.7), requires_grad=True)
    if op == "softmax":
        x = seqlab.tensor(np.array([0.7], np.float32), requires_grad=True)
        out = F.softmax(x)[0]
        assert out.shape == ()
    else:
        out = F.add_relu(x, seqlab.tensor(np.float32(0.1))) if op == "add_relu" else getattr(F, op)(x)
    out.backward()
    assert x.grad is not None and x.grad.shape == x.shape and np.isfinite(x.grad).all()
    eps = 1e-3
    plus = {"sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh, "relu": lambda v: max(v, 0.0),
            "gelu": lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))),
            "add_relu": lambda v: max(v + 0.1, 0.0), "softmax": lambda v: 1.0}[op]
    numeric = (plus(0.7 + eps) - plus(0.7 - eps)) / (2 * eps)
    np.testing.assert_allclose(x.grad.reshape(()), numeric, atol=1e-3)


def test_embedding_of_a_scalar_index_has_no_batch_axis():
    w = seqlab.tensor(np.arange(12, dtype=np.float32).reshape(4, 3), requires_grad=True)
    out = F.embedding(np.int64(2), w)
    assert out.shape == (3,)
    out.backward(np.ones(3, np.float32))
    np.testing.assert_array_equal(w.grad, np.eye(4, dtype=np.float32)[2][:, None] * np.ones(3))
