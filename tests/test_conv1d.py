"""Conv1d / CausalConv1d: parity with torch.nn.Conv1d (left padding), gradients, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import seqlab
from seqlab import functional as F
from seqlab import nn


def _torch_causal(torch, x_cl, w, b, dilation):
    """torch.nn.functional.conv1d over the input left-padded with dilation*(K-1) zeros."""
    x = torch.tensor(x_cl.transpose(0, 2, 1).copy(), requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    pad = dilation * (w.shape[2] - 1)
    y = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (pad, 0)), wt, bt, dilation=dilation)
    return x, wt, bt, y


@pytest.mark.parametrize(
    "dilation,k,bias", [(1, 3, True), (2, 2, False), (4, 3, True), (8, 5, True), (1, 1, True)]
)
def test_causal_conv_matches_torch(torch, rng, dilation, k, bias):
    B, T, cin, cout = 3, 37, 5, 7
    x = rng.standard_normal((B, T, cin)).astype(np.float32)
    w = rng.standard_normal((cout, cin, k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    gy = rng.standard_normal((B, T, cout)).astype(np.float32)

    xs = seqlab.tensor(x, requires_grad=True)
    ws = nn.Parameter(w)
    bs = None if b is None else nn.Parameter(b)
    y = F.causal_conv1d(xs, ws, bs, dilation=dilation)
    (y * gy).sum().backward()

    xt, wt, bt, yt = _torch_causal(torch, x, w, b, dilation)
    (yt * torch.tensor(gy.transpose(0, 2, 1).copy())).sum().backward()

    np.testing.assert_allclose(y.data, yt.detach().numpy().transpose(0, 2, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(xs.grad, xt.grad.numpy().transpose(0, 2, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ws.grad, wt.grad.numpy(), rtol=1e-4, atol=1e-3)
    if bias:
        np.testing.assert_allclose(bs.grad, bt.grad.numpy(), rtol=1e-4, atol=1e-3)


def test_causality_future_inputs_do_not_change_past_outputs(rng):
    conv = nn.CausalConv1d(3, 4, kernel_size=3, dilation=2)
    x = rng.standard_normal((2, 20, 3)).astype(np.float32)
    y1 = conv(x).data
    x2 = x.copy()
    x2[:, 12:] += 10.0
    y2 = conv(x2).data
    np.testing.assert_array_equal(y1[:, :12], y2[:, :12])
    assert np.abs(y1[:, 12:] - y2[:, 12:]).max() > 0.1


@pytest.mark.parametrize("padding", [0, 2, "causal", "same", "valid"])
def test_module_state_dict_moves_to_torch_and_matches(torch, rng, padding):
    conv = nn.Conv1d(4, 6, kernel_size=3, padding=padding, dilation=2)
    ref = torch.nn.Conv1d(
        4, 6, kernel_size=3, dilation=2, padding=padding if padding not in ("causal",) else 0
    )
    ref.load_state_dict({k: torch.tensor(v) for k, v in conv.state_dict().items()})
    x = rng.standard_normal((2, 4, 15)).astype(np.float32)
    xt = torch.tensor(x)
    if padding == "causal":
        xt = torch.nn.functional.pad(xt, (4, 0))
    expected = ref(xt).detach().numpy()
    got = conv(x).data
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_init_matches_torch_bounds():
    conv = nn.Conv1d(8, 16, kernel_size=3)
    bound = 1.0 / np.sqrt(8 * 3)
    assert np.abs(conv.weight.data).max() <= bound + 1e-6
    assert np.abs(conv.weight.data).max() > 0.8 * bound
    assert np.abs(conv.bias.data).max() <= bound + 1e-6


def test_bad_input_raises_clear_errors():
    conv = nn.CausalConv1d(3, 4, kernel_size=3)
    with pytest.raises(ValueError, match="channels"):
        conv(np.zeros((2, 10, 5), np.float32))
    with pytest.raises(TypeError, match="float32"):
        conv(np.zeros((2, 10, 3), np.int64))
    with pytest.raises(ValueError, match="receptive field"):
        F.conv1d_channels_last(np.zeros((1, 2, 3), np.float32), conv.weight, None, 1, (0, 0))
    with pytest.raises(ValueError, match="stride"):
        nn.Conv1d(3, 4, 3, stride=2)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.Conv1d(3, 4, 0)
    with pytest.raises(ValueError, match="one input channel"):
        seqlab._core.conv1d_forward(np.zeros((1, 5, 0), np.float32), np.zeros((4, 0, 3), np.float32))
    with pytest.raises(ValueError, match="grad_output"):
        _, cache = seqlab._core.conv1d_forward(np.zeros((1, 5, 3), np.float32), conv.weight.data)
        seqlab._core.conv1d_backward(cache, np.zeros((1, 4, 4), np.float32))


def test_trains_under_threads_deterministically(rng):
    x = rng.standard_normal((4, 30, 3)).astype(np.float32)
    grads = []
    for threads in (1, 2, 2):
        seqlab.set_num_threads(threads)
        seqlab.manual_seed(0)
        conv = nn.CausalConv1d(3, 8, kernel_size=3, dilation=4)
        xs = seqlab.tensor(x, requires_grad=True)
        (conv(xs) ** 2).sum().backward()
        grads.append((xs.grad.copy(), conv.weight.grad.copy()))
    seqlab.set_num_threads(2)
    np.testing.assert_array_equal(grads[1][0], grads[2][0])
    np.testing.assert_array_equal(grads[1][1], grads[2][1])
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-5)


def _torch_padded(torch, x_cl, w, b, dilation, left, right, gy_cl):
    """torch's conv1d over zero padding (left, right), its output and the three gradients."""
    x = torch.tensor(x_cl.transpose(0, 2, 1).copy(), requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    y = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (left, right)), wt, bt, dilation=dilation)
    (y * torch.tensor(gy_cl.transpose(0, 2, 1).copy())).sum().backward()
    out = y.detach().numpy().transpose(0, 2, 1)
    return out, x.grad.numpy().transpose(0, 2, 1), wt.grad.numpy(), bt.grad.numpy()


@pytest.mark.parametrize(
    "shape,padding",
    [
        ((3, 23, 5, 7, 3, 2), (1, 6)),  # output longer than the input, right padding
        ((2, 30, 4, 6, 4, 3), (0, 0)),  # 'valid': output shorter than the input
        ((8, 200, 32, 32, 3, 4), (8, 0)),  # causal, large enough to split over threads and tiles
        ((5, 150, 24, 40, 2, 1), (3, 2)),
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_padded_conv_forward_and_gradients_match_torch(torch, rng, shape, padding, threads):
    B, T, cin, cout, k, d = shape
    left, right = padding
    x = rng.standard_normal((B, T, cin)).astype(np.float32)
    w = (0.3 * rng.standard_normal((cout, cin, k))).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    t_out = T + left + right - d * (k - 1)
    gy = rng.standard_normal((B, t_out, cout)).astype(np.float32)
    seqlab.set_num_threads(threads)
    try:
        xs, ws, bs = seqlab.tensor(x, requires_grad=True), nn.Parameter(w), nn.Parameter(b)
        y = F.conv1d_channels_last(xs, ws, bs, d, (left, right))
        y.backward(gy)
    finally:
        seqlab.set_num_threads(2)
    ty, tgx, tgw, tgb = _torch_padded(torch, x, w, b, d, left, right, gy)
    assert y.shape == ty.shape
    np.testing.assert_allclose(y.data, ty, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(xs.grad, tgx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ws.grad, tgw, rtol=1e-4, atol=2e-3)
    np.testing.assert_allclose(bs.grad, tgb, rtol=1e-4, atol=2e-3)


def test_recycled_workspaces_give_identical_results_and_backward_runs_once(rng):
    conv = nn.CausalConv1d(16, 24, kernel_size=3, dilation=2)
    other = nn.CausalConv1d(24, 8, kernel_size=2, dilation=5)
    x = rng.standard_normal((6, 90, 16)).astype(np.float32)
    runs = []
    for _ in range(3):  # later runs reuse the caches the earlier ones released
        conv.zero_grad()
        other.zero_grad()
        xs = seqlab.tensor(x, requires_grad=True)
        y = other(conv(xs))
        (y**2).sum().backward()
        runs.append((y.data.copy(), xs.grad.copy(), conv.weight.grad.copy(), other.bias.grad.copy()))
    for run in runs[1:]:
        for a, b in zip(runs[0], run, strict=True):
            np.testing.assert_array_equal(a, b)
    with seqlab.no_grad():
        np.testing.assert_array_equal(other(conv(x)).data, runs[0][0])
    F.clear_conv_workspace()
    np.testing.assert_array_equal(other(conv(x)).data, runs[0][0])
    _, cache = seqlab._core.conv1d_forward(x, conv.weight.data, None, 2, 4, 0)
    seqlab._core.conv1d_backward(cache, np.ones((6, 90, 24), np.float32))
    with pytest.raises(RuntimeError, match="already used by a backward"):
        seqlab._core.conv1d_backward(cache, np.ones((6, 90, 24), np.float32))
    _, fresh = seqlab._core.conv1d_forward(x, conv.weight.data)
    with pytest.raises(ValueError, match="backward has not run"):
        seqlab._core.conv1d_forward(x, conv.weight.data, reuse=fresh)


@pytest.mark.parametrize("shape", [(3, 37, 5, 7, 3, 2), (8, 120, 32, 32, 3, 4)])
def test_fused_relu_equals_conv_then_relu(rng, shape):
    B, T, cin, cout, k, d = shape
    x = rng.standard_normal((B, T, cin)).astype(np.float32)
    w = (0.3 * rng.standard_normal((cout, cin, k))).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    gy = rng.standard_normal((B, T, cout)).astype(np.float32)
    results = []
    for fused in (False, True):
        xs, ws, bs = seqlab.tensor(x, requires_grad=True), nn.Parameter(w), nn.Parameter(b)
        if fused:
            y = F.causal_conv1d(xs, ws, bs, dilation=d, activation="relu")
        else:
            y = F.relu(F.causal_conv1d(xs, ws, bs, dilation=d))
        y.backward(gy)
        results.append((y.data, xs.grad, ws.grad, bs.grad))
    assert (results[0][0] == 0).any() and (results[0][0] > 0).any()
    for a, b2 in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b2)
    with pytest.raises(ValueError, match="activation"):
        F.causal_conv1d(x, nn.Parameter(w), None, activation="tanh")


def test_add_relu_matches_relu_of_sum(rng):
    a = rng.standard_normal((4, 9, 6)).astype(np.float32)
    b = rng.standard_normal((4, 9, 6)).astype(np.float32)
    g = rng.standard_normal((4, 9, 6)).astype(np.float32)
    grads = []
    for fused in (False, True):
        ta, tb = seqlab.tensor(a, requires_grad=True), seqlab.tensor(b, requires_grad=True)
        y = F.add_relu(ta, tb) if fused else F.relu(ta + tb)
        y.backward(g)
        grads.append((y.data, ta.grad, tb.grad))
    for u, v in zip(*grads, strict=True):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="other"):
        F.add_relu(a, b[:, :3])


@pytest.mark.parametrize("cin,threads", [(5, 1), (16, 2), (7, 2)])
def test_temporal_block_matches_unfused_ops_and_torch(torch, rng, cin, threads):
    from seqlab.models.forecast.tcn import TemporalBlock

    B, T, C, k, d = 6, 70, 16, 3, 4
    block = TemporalBlock(cin, C, k, d)
    x = rng.standard_normal((B, T, cin)).astype(np.float32)
    gy = rng.standard_normal((B, T, C)).astype(np.float32)
    seqlab.set_num_threads(threads)
    try:
        xs = seqlab.tensor(x, requires_grad=True)
        y = block(xs)
        y.backward(gy)
        # the same block as separate ops
        xu = seqlab.tensor(x, requires_grad=True)
        params = list(block.parameters())
        fused_grads = [p.grad.copy() for p in params]
        block.zero_grad()
        h = block.conv1.forward_channels_last(xu, activation="relu")
        h = block.conv2.forward_channels_last(h, activation="relu")
        res = xu if block.downsample is None else block.downsample(xu)
        yu = F.add_relu(h, res)
        yu.backward(gy)
    finally:
        seqlab.set_num_threads(2)
    np.testing.assert_array_equal(y.data, yu.data)
    np.testing.assert_allclose(xs.grad, xu.grad, rtol=1e-6, atol=1e-6)
    for a, p in zip(fused_grads, params, strict=True):
        np.testing.assert_allclose(a, p.grad, rtol=1e-6, atol=1e-6)

    tnn, tF = torch.nn, torch.nn.functional
    c1, c2 = tnn.Conv1d(cin, C, k, dilation=d), tnn.Conv1d(C, C, k, dilation=d)
    for mod, ours in ((c1, block.conv1), (c2, block.conv2)):
        mod.load_state_dict({n: torch.tensor(v) for n, v in ours.state_dict().items()})
    xt = torch.tensor(x.transpose(0, 2, 1).copy(), requires_grad=True)
    pad = d * (k - 1)
    out = tF.relu(c2(tF.pad(tF.relu(c1(tF.pad(xt, (pad, 0)))), (pad, 0))))
    if block.downsample is None:
        res_t = xt
    else:
        lin = tnn.Linear(cin, C)
        lin.load_state_dict({n: torch.tensor(v) for n, v in block.downsample.state_dict().items()})
        res_t = lin(xt.transpose(1, 2)).transpose(1, 2)
    yt = tF.relu(out + res_t)
    yt.backward(torch.tensor(gy.transpose(0, 2, 1).copy()))
    np.testing.assert_allclose(y.data, yt.detach().numpy().transpose(0, 2, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(xs.grad, xt.grad.numpy().transpose(0, 2, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused_grads[0], c1.weight.grad.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(fused_grads[3], c2.bias.grad.numpy(), rtol=1e-4, atol=1e-3)


def test_temporal_block_bad_input_and_second_backward(rng):
    w1 = np.zeros((4, 3, 2), np.float32)
    w2 = np.zeros((4, 4, 2), np.float32)
    x = rng.standard_normal((2, 9, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="downsample_weight"):
        seqlab._core.temporal_block_forward(x, w1, None, w2, None)
    with pytest.raises(ValueError, match="conv2_weight"):
        seqlab._core.temporal_block_forward(x, w1, None, w1, None, np.zeros((4, 3), np.float32))
    wd = np.zeros((4, 3), np.float32)
    y, cache = seqlab._core.temporal_block_forward(x, w1, None, w2, None, wd, None, 2)
    assert y.shape == (2, 9, 4)
    seqlab._core.temporal_block_backward(cache, np.ones_like(y))
    with pytest.raises(RuntimeError, match="already used by a backward"):
        seqlab._core.temporal_block_backward(cache, np.ones_like(y))
