"""RNN, LSTM and GRU against torch.nn (float32): outputs, final states and every gradient."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import seqlab
from seqlab import nn

RTOL, ATOL = 1e-4, 1e-5
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def make_pair(torch, cell: str, input_size: int, hidden: int, **kwargs):
    """A seqlab module and the torch module holding the same weights."""
    if cell.startswith("rnn"):
        kwargs["nonlinearity"] = cell[4:]
        ours, theirs = nn.RNN, torch.nn.RNN
    elif cell == "lstm":
        ours, theirs = nn.LSTM, torch.nn.LSTM
    else:
        ours, theirs = nn.GRU, torch.nn.GRU
    batch_first = kwargs.pop("batch_first", True)
    module = ours(input_size, hidden, batch_first=batch_first, **kwargs)
    ref = theirs(input_size, hidden, batch_first=batch_first, **kwargs)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in module.state_dict().items()})
    return module, ref


def torch_run(torch, ref, x, hx, lengths, batch_first=True):
    """Runs the torch module, packing when lengths are given; returns (output, h_n, c_n)."""
    seq_axis = 1 if batch_first else 0
    inp = x
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.as_tensor(lengths), batch_first=batch_first, enforce_sorted=False
        )
    out, state = ref(inp, hx)
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=batch_first, total_length=x.shape[seq_axis]
        )
    if isinstance(state, tuple):
        return out, state[0], state[1]
    return out, state, None


def close(actual, expected, what: str) -> None:
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=what)


def check_against_torch(torch, cell, layers, bidirectional, batch, seq, with_lengths,
                        with_states, input_size=7, hidden=18, batch_first=True, bias=True):
    key = repr((cell, layers, bidirectional, batch, seq)).encode()
    rng = np.random.default_rng(zlib.crc32(key))
    module, ref = make_pair(torch, cell, input_size, hidden, num_layers=layers,
                            bidirectional=bidirectional, batch_first=batch_first, bias=bias)
    D = 2 if bidirectional else 1
    shape = (batch, seq, input_size) if batch_first else (seq, batch, input_size)
    x = rng.standard_normal(shape).astype(np.float32)
    lengths = None
    if with_lengths:
        lengths = rng.integers(1, seq + 1, size=batch)
        lengths[0] = seq
    states = [rng.standard_normal((layers * D, batch, hidden)).astype(np.float32)
              for _ in range(2 if cell == "lstm" else 1)] if with_states else None
    out_shape = (batch, seq, D * hidden) if batch_first else (seq, batch, D * hidden)
    w_out = rng.standard_normal(out_shape).astype(np.float32)
    w_h = rng.standard_normal((layers * D, batch, hidden)).astype(np.float32)
    w_c = rng.standard_normal((layers * D, batch, hidden)).astype(np.float32)

    # seqlab
    xs = seqlab.tensor(x, requires_grad=True)
    st = [seqlab.tensor(s, requires_grad=True) for s in states] if states else None
    hx = None if st is None else (tuple(st) if cell == "lstm" else st[0])
    result = module(xs, hx, lengths=lengths)
    out, h_n, c_n = (result[0], *result[1]) if cell == "lstm" else (*result, None)
    loss = (out * w_out).sum() + (h_n * w_h).sum()
    if c_n is not None:
        loss = loss + (c_n * w_c).sum()
    loss.backward()

    # torch
    xt = torch.tensor(x, requires_grad=True)
    tst = [torch.tensor(s, requires_grad=True) for s in states] if states else None
    thx = None if tst is None else (tuple(tst) if cell == "lstm" else tst[0])
    tout, th, tc = torch_run(torch, ref, xt, thx, lengths, batch_first)
    tloss = (tout * torch.from_numpy(w_out)).sum() + (th * torch.from_numpy(w_h)).sum()
    if tc is not None:
        tloss = tloss + (tc * torch.from_numpy(w_c)).sum()
    tloss.backward()

    close(out.numpy(), tout.detach().numpy(), "output")
    close(h_n.numpy(), th.detach().numpy(), "h_n")
    if cell == "lstm":
        close(c_n.numpy(), tc.detach().numpy(), "c_n")
    close(xs.grad, xt.grad.numpy(), "grad input")
    if st is not None:
        for s, ts, name in zip(st, tst, ("h0", "c0"), strict=False):
            close(s.grad, ts.grad.numpy(), f"grad {name}")
    torch_params = dict(ref.named_parameters())
    names = [n for n, _ in module.named_parameters()]
    assert names == list(torch_params), "parameter names and order match torch"
    for name, p in module.named_parameters():
        close(p.grad, torch_params[name].grad.numpy(), f"grad {name}")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("with_states", [False, True])
def test_matches_torch(torch, cell, layers, bidirectional, with_lengths, with_states):
    check_against_torch(torch, cell, layers, bidirectional, batch=4, seq=6,
                        with_lengths=with_lengths, with_states=with_states)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("batch,seq", [(1, 1), (1, 5), (3, 1)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_matches_torch_small_shapes(torch, cell, batch, seq, bidirectional):
    check_against_torch(torch, cell, 2, bidirectional, batch=batch, seq=seq,
                        with_lengths=batch > 1, with_states=True)


@pytest.mark.parametrize("cell", CELLS)
def test_matches_torch_wide_and_seq_first(torch, cell):
    # hidden 37 = two 16-lane batches and a tail; time-major input; no biases.
    check_against_torch(torch, cell, 2, True, batch=5, seq=9, with_lengths=True,
                        with_states=True, input_size=19, hidden=37, batch_first=False)
    check_against_torch(torch, cell, 1, False, batch=3, seq=4, with_lengths=False,
                        with_states=False, bias=False)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matches_torch_batch_split_time_loop(torch, cell, threads):
    """Batch 40 and hidden 18 at several threads: the time loop splits over the batch rows."""
    previous = seqlab.get_num_threads()
    try:
        seqlab.set_num_threads(threads)
        check_against_torch(torch, cell, 2, True, batch=40, seq=7, with_lengths=True, with_states=True)
    finally:
        seqlab.set_num_threads(previous)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_state_dict_moves_both_ways(torch, cell):
    module, ref = make_pair(torch, cell, 3, 4, num_layers=2, bidirectional=True)
    # torch -> seqlab
    fresh = ref.__class__(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    module.load_state_dict({k: v.numpy() for k, v in fresh.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    out, _ = module(x)
    tout, _ = fresh(torch.from_numpy(x))
    close(out.numpy(), tout.detach().numpy(), "output after loading torch weights")
    # seqlab -> torch
    seqlab.manual_seed(3)
    other = module.__class__(3, 4, num_layers=2, bidirectional=True)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in other.state_dict().items()})
    out, _ = other(x)
    tout, _ = ref(torch.from_numpy(x))
    close(out.numpy(), tout.detach().numpy(), "output after loading seqlab weights")
    assert list(other.state_dict()) == list(ref.state_dict())
