"""Recurrent layers without torch: finite-difference gradients, bad input, dropout, init."""

from __future__ import annotations

import numpy as np
import pytest

import seqlab
from conftest import central_difference
from seqlab import _core, nn
from seqlab import functional as F

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def build(cell: str, *args, **kwargs):
    if cell.startswith("rnn"):
        return nn.RNN(*args, nonlinearity=cell[4:], **kwargs)
    return (nn.LSTM if cell == "lstm" else nn.GRU)(*args, **kwargs)


# ------------------------------------------------------ finite differences
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_match_central_differences(cell, rng):
    """float32 central differences on a small bidirectional two-layer net with lengths."""
    module = build(cell, 3, 4, num_layers=2, bidirectional=True)
    x = rng.standard_normal((3, 5, 3)).astype(np.float32)
    h0 = 0.5 * rng.standard_normal((4, 3, 4)).astype(np.float32)
    c0 = 0.5 * rng.standard_normal((4, 3, 4)).astype(np.float32)
    lengths = np.array([5, 2, 4])
    w_out = rng.standard_normal((3, 5, 8)).astype(np.float32)
    w_h = rng.standard_normal((4, 3, 4)).astype(np.float32)

    def loss_of(xv, h0v, c0v):
        hx = (seqlab.tensor(h0v), seqlab.tensor(c0v)) if cell == "lstm" else seqlab.tensor(h0v)
        out, state = module(seqlab.tensor(xv), hx, lengths=lengths)
        h = state[0] if cell == "lstm" else state
        return float((out.numpy().astype(np.float64) * w_out).sum()
                     + (h.numpy().astype(np.float64) * w_h).sum())

    xs = seqlab.tensor(x, requires_grad=True)
    hs = seqlab.tensor(h0, requires_grad=True)
    cs = seqlab.tensor(c0, requires_grad=True)
    out, state = module(xs, (hs, cs) if cell == "lstm" else hs, lengths=lengths)
    h = state[0] if cell == "lstm" else state
    ((out * w_out).sum() + (h * w_h).sum()).backward()

    eps = 1e-3 if cell == "rnn_relu" else 1e-2
    targets = [("input", x, xs.grad), ("h0", h0, hs.grad)]
    if cell == "lstm":
        targets.append(("c0", c0, cs.grad))
    targets += [(name, p.data, p.grad) for name, p in module.named_parameters()]
    pick = np.random.default_rng(7)

    def central(array, idx, step):
        return central_difference(lambda: loss_of(x, h0, c0), array, idx, step)

    checked = skipped = 0
    with seqlab.no_grad():
        for name, array, grad in targets:
            for flat in pick.choice(array.size, size=min(6, array.size), replace=False):
                idx = np.unravel_index(flat, array.shape)
                numeric = central(array, idx, eps)
                if cell == "rnn_relu":
                    # A ReLU kink inside the step makes the difference quotient meaningless:
                    # detect it by halving the step, and check only where both agree.
                    half = central(array, idx, eps / 2)
                    if abs(half - numeric) > 2e-2 * max(1.0, abs(numeric)):
                        skipped += 1
                        continue
                checked += 1
                assert grad[idx] == pytest.approx(numeric, rel=3e-2, abs=3e-3), (name, idx)
    assert checked >= 4 * skipped and checked > 30
    # padded steps carry no gradient into the input
    np.testing.assert_array_equal(xs.grad[1, 2:], 0.0)


def test_padded_outputs_are_zero_and_states_stop(rng):
    module = nn.GRU(2, 3)
    x = rng.standard_normal((2, 4, 2)).astype(np.float32)
    out, h = module(x, lengths=[4, 2])
    np.testing.assert_array_equal(out.numpy()[1, 2:], 0.0)
    short, h_short = module(x[1:, :2])
    np.testing.assert_allclose(out.numpy()[1, :2], short.numpy()[0], rtol=1e-6)
    np.testing.assert_allclose(h.numpy()[:, 1], h_short.numpy()[:, 0], rtol=1e-6)


def test_gradient_accumulates_across_backward_calls(rng):
    module = nn.LSTM(3, 4)
    x = rng.standard_normal((2, 3, 3)).astype(np.float32)
    out, _ = module(x)
    out.sum().backward()
    first = module.weight_hh_l0.grad.copy()
    assert np.abs(first).sum() > 0
    out, (h, c) = module(x)
    out.sum().backward()
    np.testing.assert_allclose(module.weight_hh_l0.grad, 2 * first, rtol=1e-5, atol=1e-7)


def test_only_final_state_in_loss(rng):
    module = nn.LSTM(3, 4, bidirectional=True)
    xs = seqlab.tensor(rng.standard_normal((2, 3, 3)), requires_grad=True)
    _, (h, c) = module(xs)
    c.sum().backward()
    assert np.abs(xs.grad).sum() > 0
    assert module.bias_hh_l0_reverse.grad is not None


def test_no_grad_records_nothing(rng):
    module = nn.GRU(3, 4)
    with seqlab.no_grad():
        out, h = module(rng.standard_normal((2, 3, 3)))
    assert not out.requires_grad and not h.requires_grad


# --------------------------------------------------------------- bad input
def test_integer_input_is_refused():
    with pytest.raises(TypeError, match="input"):
        nn.LSTM(3, 4)(np.ones((2, 5, 3), dtype=np.int64))


def test_float64_input_is_converted():
    out, _ = nn.GRU(3, 4)(np.ones((2, 5, 3), dtype=np.float64))
    assert out.dtype == np.float32 and out.shape == (2, 5, 4)


@pytest.mark.parametrize("shape", [(2, 5, 4), (5, 3), (1, 2, 5, 3)])
def test_wrong_input_shape_names_input(shape):
    with pytest.raises(ValueError, match=r"input.*3.*got shape \(" + ", ".join(map(str, shape))):
        nn.RNN(3, 4)(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("lengths", [[5, 0], [6, 2], [-1, 3]])
def test_lengths_out_of_range(lengths):
    with pytest.raises(ValueError, match=r"lengths.*\[1, 5\]"):
        nn.GRU(3, 4)(np.zeros((2, 5, 3), np.float32), lengths=lengths)


def test_lengths_wrong_shape_and_dtype():
    x = np.zeros((2, 5, 3), np.float32)
    with pytest.raises(ValueError, match=r"lengths.*\(2,\).*\(3,\)"):
        nn.GRU(3, 4)(x, lengths=[1, 2, 3])
    with pytest.raises(TypeError, match="lengths"):
        nn.GRU(3, 4)(x, lengths=[1.5, 2.0])


def test_hx_shape_mismatch():
    x = np.zeros((2, 5, 3), np.float32)
    with pytest.raises(ValueError, match=r"hx.*\(2, 2, 4\).*\(1, 2, 4\)"):
        nn.GRU(3, 4, num_layers=2)(x, np.zeros((1, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"hx\[1\].*\(1, 2, 4\).*\(1, 3, 4\)"):
        nn.LSTM(3, 4)(x, (np.zeros((1, 2, 4), np.float32), np.zeros((1, 3, 4), np.float32)))
    with pytest.raises(ValueError, match="hx"):
        nn.LSTM(3, 4)(x, np.zeros((1, 2, 4), np.float32))


def test_constructor_arguments_checked():
    with pytest.raises(ValueError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size"):
        nn.GRU(3, 0)
    with pytest.raises(ValueError, match="dropout"):
        nn.GRU(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="init"):
        nn.GRU(3, 4, init="zeros")


def test_kernel_checks_name_the_argument():
    x = np.zeros((2, 3, 4), np.float32)
    w_ih, w_hh = np.zeros((12, 4), np.float32), np.zeros((12, 4), np.float32)
    with pytest.raises(ValueError, match=r"w_ih\[0\].*\(12, 4\).*\(12, 5\)"):
        _core.recurrent_forward("gru", x, [np.zeros((12, 5), np.float32)], [w_hh])
    with pytest.raises(TypeError, match=r"input.*float32.*float64"):
        _core.recurrent_forward("gru", x.astype(np.float64), [w_ih], [w_hh])
    with pytest.raises(ValueError, match="input.*C-contiguous"):
        _core.recurrent_forward("gru", np.zeros((3, 2, 4), np.float32).transpose(1, 0, 2),
                                [w_ih], [w_hh])
    with pytest.raises(ValueError, match="mode"):
        _core.recurrent_forward("lstmx", x, [w_ih], [w_hh])
    with pytest.raises(ValueError, match=r"lengths.*\[1, 3\]"):
        _core.recurrent_forward("gru", x, [w_ih], [w_hh], lengths=np.array([4, 1]))
    with pytest.raises(ValueError, match=r"h0.*\(1, 2, 4\)"):
        _core.recurrent_forward("gru", x, [w_ih], [w_hh], h0=np.zeros((2, 2, 4), np.float32))
    with pytest.raises(ValueError, match="c0"):
        _core.recurrent_forward("gru", x, [w_ih], [w_hh], c0=np.zeros((1, 2, 4), np.float32))


def test_strided_input_tensor_is_read_correctly(rng):
    module = nn.LSTM(3, 4)
    base = rng.standard_normal((2, 6, 3)).astype(np.float32)
    out_strided, _ = module(base[:, ::2])
    out_copy, _ = module(np.ascontiguousarray(base[:, ::2]))
    np.testing.assert_array_equal(out_strided.numpy(), out_copy.numpy())


# ----------------------------------------------------------- dropout, init
def test_dropout_between_layers_training_vs_eval(rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    module = nn.GRU(5, 6, num_layers=2, dropout=0.5)
    module.eval()
    a, _ = module(x)
    b, _ = module(x)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    module.train()
    seqlab.manual_seed(11)
    c, _ = module(x)
    seqlab.manual_seed(11)
    d, _ = module(x)
    e, _ = module(x)
    np.testing.assert_array_equal(c.numpy(), d.numpy())
    assert np.abs(c.numpy() - a.numpy()).max() > 1e-3
    assert np.abs(e.numpy() - d.numpy()).max() > 1e-3
    # one layer: dropout has nothing to act on
    single = nn.GRU(5, 6, dropout=0.5)
    np.testing.assert_array_equal(single(x)[0].numpy(), single.eval()(x)[0].numpy())


def test_default_init_range_and_reproducibility():
    seqlab.manual_seed(5)
    a = nn.LSTM(10, 16, num_layers=2)
    seqlab.manual_seed(5)
    b = nn.LSTM(10, 16, num_layers=2)
    bound = 1 / np.sqrt(16)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.8 * bound, name


def test_orthogonal_init():
    module = nn.GRU(10, 8, init="orthogonal", bidirectional=True)
    w = module.weight_hh_l0_reverse.data
    for g in range(3):
        block = w[g * 8:(g + 1) * 8]
        np.testing.assert_allclose(block @ block.T, np.eye(8), atol=1e-5)
    np.testing.assert_array_equal(module.bias_ih_l0.data, 0.0)
    limit = np.sqrt(6 / (10 + 24))
    assert np.abs(module.weight_ih_l0.data).max() <= limit


def test_parameter_names_and_shapes():
    module = nn.LSTM(3, 5, num_layers=2, bidirectional=True, bias=False)
    shapes = {n: p.shape for n, p in module.named_parameters()}
    assert shapes == {
        "weight_ih_l0": (20, 3), "weight_hh_l0": (20, 5),
        "weight_ih_l0_reverse": (20, 3), "weight_hh_l0_reverse": (20, 5),
        "weight_ih_l1": (20, 10), "weight_hh_l1": (20, 5),
        "weight_ih_l1_reverse": (20, 10), "weight_hh_l1_reverse": (20, 5),
    }


def test_functional_layer_outputs(rng):
    x = seqlab.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    w_ih = [seqlab.tensor(rng.standard_normal((4, 4)) * 0.3, requires_grad=True)]
    w_hh = [seqlab.tensor(rng.standard_normal((4, 4)) * 0.3, requires_grad=True)]
    out, h_n, c_n = F.recurrent_layer("rnn_tanh", x, w_ih, w_hh)
    assert c_n is None
    np.testing.assert_allclose(h_n.numpy()[0], out.numpy()[:, -1], rtol=1e-6)
    expected = np.tanh(x.numpy()[:, 0] @ w_ih[0].numpy().T)
    np.testing.assert_allclose(out.numpy()[:, 0], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        F.recurrent_layer("elman", x, w_ih, w_hh)


def test_second_backward_through_same_graph_raises(rng):
    module = nn.GRU(3, 4)
    out, _ = module(rng.standard_normal((2, 3, 3)))
    loss = out.sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="already used by a backward"):
        loss.backward()


def test_reused_buffers_give_identical_steps(rng):
    module = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    grads = []
    for batch, seq in [(2, 5), (2, 5), (3, 2), (2, 5)]:
        module.zero_grad()
        x = np.arange(batch * seq * 3, dtype=np.float32).reshape(batch, seq, 3) / 10
        with seqlab.no_grad():
            module(x)  # an evaluation in between recycles buffers without a backward
        out, (h, c) = module(x, lengths=np.full(batch, seq))
        (out.sum() + c.sum()).backward()
        if (batch, seq) == (2, 5):
            grads.append([p.grad.copy() for p in module.parameters()])
    for later in grads[1:]:
        for a, b in zip(grads[0], later, strict=True):
            np.testing.assert_array_equal(a, b)
    assert all(len(w) == 1 for w in module._workspaces)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("hidden", [16, 300])
def test_same_bits_for_any_thread_count(rng, cell, hidden):
    """Each row's arithmetic is the same whether a step splits its product over the pool
    (wide layers) or each thread runs the whole sequence for its own batch rows (narrow)."""
    x = rng.standard_normal((50, 6, 5)).astype(np.float32)
    lengths = rng.integers(1, 7, size=50)
    results = []
    previous = seqlab.get_num_threads()
    try:
        for threads in (1, 2, 3):
            seqlab.set_num_threads(threads)
            seqlab.manual_seed(3)
            module = build(cell, 5, hidden, num_layers=2, bidirectional=True)
            xs = seqlab.tensor(x, requires_grad=True)
            y, _ = module(xs, lengths=lengths)
            (y * y).sum().backward()
            results.append([y.data, xs.grad] + [p.grad for p in module.parameters()])
    finally:
        seqlab.set_num_threads(previous)
    for later in results[1:]:
        for a, b in zip(results[0], later, strict=True):
            np.testing.assert_array_equal(a, b)
