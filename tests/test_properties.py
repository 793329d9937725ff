"""Property tests: every kernel and autograd op against PyTorch over drawn inputs.

Hypothesis draws the shapes (sizes 1 and non-multiples of the 16-float SIMD width),
lengths, masks, causal or not, broadcasting, the memory layout of every array handed
in (C order, Fortran order, negative strides, strided slices of a larger buffer), the
kernel thread count (1-3) and the scale of the values (up to near float32 overflow).
Each op runs forward and backward through :mod:`seqlab.functional`; its output and
every gradient must match PyTorch's, or the input must be refused with a named error.

Profiles (tests/conftest.py): ``ci`` (default, few derandomized examples) and ``long``
(``HYPOTHESIS_PROFILE=long pytest tests/test_properties.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="needs hypothesis (pip install 'seqlab[dev]')")
torch = pytest.importorskip("torch")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import seqlab  # noqa: E402
import seqlab.functional as F  # noqa: E402
from seqlab import nn  # noqa: E402
from seqlab.metrics import topk  # noqa: E402
from seqlab.nn import RecurrentDecoder  # noqa: E402

TF = torch.nn.functional
RTOL, ATOL = 2e-4, 2e-5
SIZES = st.sampled_from([1, 2, 3, 5, 7, 15, 16, 17, 31, 33])
SMALL = st.integers(1, 4)
LAYOUTS = ("c", "fortran", "reversed", "reversed_last", "strided")


@contextmanager
def threads(n: int) -> Iterator[None]:
    """The kernels run on ``n`` threads inside the block; the previous count after it."""
    before = seqlab.get_num_threads()
    seqlab.set_num_threads(n)
    try:
        yield
    finally:
        seqlab.set_num_threads(before)


def values(data: st.DataObject, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """float32 standard-normal values times ``scale`` (finite: clipped to float32's largest),
    in a drawn memory layout."""
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    big = float(np.finfo(np.float32).max)
    a = np.clip(np.random.default_rng(seed).standard_normal(shape) * scale, -big, big).astype(np.float32)
    return layout(data, a)


def layout(data: st.DataObject, a: np.ndarray) -> np.ndarray:
    """The same values as ``a`` in a drawn layout: a view with other strides, not a copy of it."""
    kind = data.draw(st.sampled_from(LAYOUTS), label="layout")
    if a.ndim == 0 or kind == "c":
        return a
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "reversed":  # negative stride on the first axis
        return np.ascontiguousarray(a[::-1])[::-1]
    if kind == "reversed_last":
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    base = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)  # every other element
    base[..., ::2] = a
    return base[..., ::2]


def t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.array(a, order="C"), requires_grad=a.dtype == np.float32)


def s(a: np.ndarray) -> seqlab.Tensor:
    return seqlab.tensor(a, requires_grad=a.dtype == np.float32)


def close(ours: np.ndarray | None, theirs: torch.Tensor | None, what: str, rtol: float = RTOL,
          atol: float = ATOL) -> None:
    assert (ours is None) == (theirs is None), what
    if ours is not None and theirs is not None:
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=rtol, atol=atol, err_msg=what)


def backward_both(out: seqlab.Tensor, ref: torch.Tensor, data: st.DataObject) -> None:
    """The same drawn upstream gradient through both graphs."""
    g = values(data, out.shape)
    out.backward(g)
    ref.backward(torch.tensor(np.array(g, order="C")))


# -------------------------------------------------------------------- dense ops
@given(st.data())
def test_linear_with_activations(data: st.DataObject) -> None:
    lead = data.draw(st.lists(SMALL, min_size=0, max_size=2), label="lead")
    n_in, n_out = data.draw(SIZES, label="in"), data.draw(SIZES, label="out")
    act = data.draw(st.sampled_from(F.LINEAR_ACTIVATIONS), label="activation")
    x, w = values(data, (*lead, n_in)), values(data, (n_out, n_in), 0.5)
    b = values(data, (n_out,)) if data.draw(st.booleans(), label="bias") else None
    xs, ws, bs = s(x), s(w), None if b is None else s(b)
    xt, wt, bt = t(x), t(w), None if b is None else t(b)
    with threads(data.draw(st.integers(1, 3), label="threads")):
        out = F.linear_activation(xs, ws, bs, act)
        ref = TF.linear(xt, wt, bt)
        ref = {"none": ref, "relu": TF.relu(ref), "gelu": TF.gelu(ref),
               "gelu_tanh": TF.gelu(ref, approximate="tanh")}[act]
        backward_both(out, ref, data)
    close(out.data, ref, "output")
    close(xs.grad, xt.grad, "input grad")
    close(ws.grad, wt.grad, "weight grad")
    if b is not None:
        close(bs.grad, bt.grad, "bias grad")  # type: ignore[union-attr]


@given(st.data())
def test_elementwise_activations_and_add_relu(data: st.DataObject) -> None:
    shape = tuple(data.draw(st.lists(SIZES, min_size=0, max_size=3), label="shape"))
    op = data.draw(st.sampled_from(["sigmoid", "tanh", "relu", "gelu", "gelu_tanh", "add_relu"]), label="op")
    scale = data.draw(st.sampled_from([1.0, 30.0, 1e30]), label="scale")
    x, y = values(data, shape, scale), values(data, shape, scale)
    xs, ys, xt, yt = s(x), s(y), t(x), t(y)
    with threads(data.draw(st.integers(1, 3), label="threads")):
        if op == "add_relu":
            out, ref = F.add_relu(xs, ys), TF.relu(xt + yt)
        elif op.startswith("gelu"):
            approximate = "tanh" if op == "gelu_tanh" else "none"
            out, ref = F.gelu(xs, approximate), TF.gelu(xt, approximate=approximate)
        else:
            out, ref = getattr(F, op)(xs), getattr(torch, op)(xt)
        backward_both(out, ref, data)
    assert np.isfinite(out.data).all() and np.isfinite(xs.grad).all()  # type: ignore[arg-type]
    close(out.data, ref, "output", atol=1e-5 * max(1.0, float(np.abs(ref.detach().numpy()).max(initial=0))))
    close(xs.grad, xt.grad, "input grad")
    if op == "add_relu":
        close(ys.grad, yt.grad, "other grad")
        bad = (*shape[:-1], shape[-1] + 1) if shape else (2,)
        with pytest.raises(ValueError, match="other: expected shape"):
            F.add_relu(x, values(data, bad))


@given(st.data())
def test_embedding(data: st.DataObject) -> None:
    num, dim = data.draw(SIZES, label="num"), data.draw(SIZES, label="dim")
    shape = tuple(data.draw(st.lists(SMALL, min_size=1, max_size=3), label="shape"))
    ids = np.random.default_rng(data.draw(st.integers(0, 999))).integers(0, num, shape)
    ids = layout(data, ids)
    pad = data.draw(st.one_of(st.none(), st.integers(0, num - 1)), label="padding_idx")
    w = values(data, (num, dim))
    ws, wt = s(w), t(w)
    out = F.embedding(ids, ws, padding_idx=pad)
    ref = TF.embedding(torch.tensor(np.array(ids, order="C")), wt, padding_idx=pad)
    backward_both(out, ref, data)
    close(out.data, ref, "output")
    close(ws.grad, wt.grad, "weight grad")


@given(st.data())
def test_embedding_out_of_range_is_a_named_error(data: st.DataObject) -> None:
    num = data.draw(SIZES)
    bad = data.draw(st.one_of(st.integers(num, num + 100), st.integers(-100, -1)))
    with pytest.raises((ValueError, IndexError), match=str(bad)):
        F.embedding(np.array([0, bad]), s(values(data, (num, 4))))


SCALES = st.sampled_from([1.0, 1e3, 1e18, 1e30, 3e38])


@given(st.data())
def test_softmax_any_axis_and_scale(data: st.DataObject) -> None:
    shape = tuple(data.draw(st.lists(SIZES, min_size=1, max_size=3), label="shape"))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    scale = data.draw(SCALES, label="scale")
    x = values(data, shape, scale)
    xs, xt = s(x), t(x)
    with threads(data.draw(st.integers(1, 3), label="threads")):
        out = F.softmax(xs, dim=dim)
        ref = TF.softmax(xt, dim=dim)
        backward_both(out, ref, data)
    assert np.isfinite(out.data).all()
    close(out.data, ref, "output")
    close(xs.grad, xt.grad, "input grad")


@given(st.data())
def test_layer_norm(data: st.DataObject) -> None:
    lead = data.draw(st.lists(SMALL, min_size=0, max_size=2), label="lead")
    ns = tuple(data.draw(st.lists(SIZES, min_size=1, max_size=2), label="normalized_shape"))
    scale = data.draw(st.sampled_from([1.0, 1e3, 1e15]), label="scale")
    x = values(data, (*lead, *ns), scale)
    affine = data.draw(st.booleans(), label="affine")
    w, b = values(data, ns), values(data, ns)
    xs, xt = s(x), t(x)
    ws, bs = (s(w), s(b)) if affine else (None, None)
    wt, bt = (t(w), t(b)) if affine else (None, None)
    with threads(data.draw(st.integers(1, 3), label="threads")):
        out = F.layer_norm(xs, ns, ws, bs)
        ref = TF.layer_norm(xt, ns, wt, bt)
        backward_both(out, ref, data)
    # (x - mean) / std loses |mean| / std float32 ulps, in either library (torch computes
    # x * rstd - mean * rstd): the tolerance grows with that condition number
    axes = tuple(range(x.ndim - len(ns), x.ndim))
    x64 = x.astype(np.float64)
    cond = float((np.abs(x64).max(axis=axes) / np.sqrt(x64.var(axis=axes) + 1e-5)).max())
    rows = x.size // int(np.prod(ns))
    atol = 1e-4 + 4e-7 * cond
    close(out.data, ref, "output", atol=atol)
    # the input gradient scales as 1/std: compare relative to the input's scale
    np.testing.assert_allclose(xs.grad * scale, xt.grad.numpy() * scale, rtol=1e-3, atol=1e-3 + 4e-7 * cond)
    if affine:
        close(ws.grad, wt.grad, "weight grad", atol=atol * 4 * rows)  # type: ignore[union-attr]
        close(bs.grad, bt.grad, "bias grad", atol=1e-4)  # type: ignore[union-attr]


# ------------------------------------------------------------------------ losses
@given(st.data())
def test_cross_entropy(data: st.DataObject) -> None:
    lead = tuple(data.draw(st.lists(SMALL, min_size=1, max_size=2), label="lead"))
    classes = data.draw(SIZES, label="classes")
    scale = data.draw(st.sampled_from([1.0, 1e3, 1e30]), label="scale")
    x = values(data, (*lead, classes), scale)
    target = np.random.default_rng(data.draw(st.integers(0, 999))).integers(0, classes, lead)
    ignore = data.draw(st.booleans(), label="ignore some")
    if ignore:
        target.reshape(-1)[0] = -100
    smoothing = data.draw(st.sampled_from([0.0, 0.1]), label="label_smoothing")
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]), label="reduction")
    xs, xt = s(x), t(x)
    with threads(data.draw(st.integers(1, 3), label="threads")):
        out = F.cross_entropy(xs, target, label_smoothing=smoothing, reduction=reduction)
        ref = TF.cross_entropy(xt.reshape(-1, classes), torch.tensor(target.reshape(-1)),
                               label_smoothing=smoothing, reduction=reduction)
        if reduction == "none":
            ref = ref.reshape(lead)
        if reduction == "mean" and (target != -100).sum() == 0:
            return  # torch gives NaN, seqlab 0 (documented)
        backward_both(out, ref, data)
    rtol = RTOL if scale == 1.0 else 1e-3
    close(out.data, ref, "loss", rtol=rtol)
    close(xs.grad, xt.grad, "input grad", rtol=rtol)


@given(st.data())
def test_cosine_mse_loss(data: st.DataObject) -> None:
    B, T, E = data.draw(SMALL, label="B"), data.draw(SIZES, label="T"), data.draw(SIZES, label="E")
    p, y = values(data, (B, T, E)), values(data, (B, T, E))
    lengths = data.draw(st.one_of(st.none(), st.lists(st.integers(0, T), min_size=B, max_size=B)),
                        label="lengths")
    cw, mw = data.draw(st.sampled_from([(0.9, 0.1), (1.0, 0.0), (0.0, 1.0)]), label="weights")
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]), label="reduction")
    ps, ys, pt, yt = s(p), s(y), t(p), t(y)
    out = F.cosine_mse_loss(ps, ys, None if lengths is None else np.array(lengths), cw, mw,
                            reduction=reduction)
    mask = torch.ones(B, T) if lengths is None else (torch.arange(T)[None] < torch.tensor(lengths)[:, None])
    mask = mask.float()
    per = cw * (1 - TF.cosine_similarity(pt, yt, dim=-1, eps=1e-8)) + mw * ((pt - yt) ** 2).mean(-1)
    per = per * mask
    ref = {"none": per, "sum": per.sum(), "mean": per.sum() / mask.sum().clamp(min=1)}[reduction]
    backward_both(out, ref, data)
    close(out.data, ref, "loss", atol=1e-4)
    close(ps.grad, pt.grad, "pred grad", atol=1e-4)
    close(ys.grad, yt.grad, "target grad", atol=1e-4)


# --------------------------------------------------------------------- recurrent
@given(st.data())
def test_recurrent_layers(data: st.DataObject) -> None:
    cell = data.draw(st.sampled_from(["rnn_tanh", "rnn_relu", "lstm", "gru"]), label="cell")
    B, T = data.draw(SMALL, label="B"), data.draw(st.sampled_from([1, 2, 5, 17]), label="T")
    C, H = data.draw(SIZES, label="C"), data.draw(SIZES, label="H")
    layers = data.draw(st.integers(1, 2), label="layers")
    bidirectional = data.draw(st.booleans(), label="bidirectional")
    with_lengths = data.draw(st.booleans(), label="lengths")
    kwargs = {"num_layers": layers, "bidirectional": bidirectional, "batch_first": True}
    if cell.startswith("rnn"):
        kwargs["nonlinearity"] = cell[4:]
        ours, theirs = nn.RNN, torch.nn.RNN
    else:
        ours, theirs = (nn.LSTM, torch.nn.LSTM) if cell == "lstm" else (nn.GRU, torch.nn.GRU)
    module, ref = ours(C, H, **kwargs), theirs(C, H, **kwargs)
    ref.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in module.state_dict().items()})
    x = values(data, (B, T, C))
    lengths = None
    if with_lengths:
        lengths = np.array(data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B)), np.int64)
    xs, xt = s(x), t(x)
    with threads(data.draw(st.integers(1, 3), label="threads")):
        out = module(xs, lengths=lengths) if lengths is not None else module(xs)
        y = out[0]
        inp = xt if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
        r, _ = ref(inp)
        if lengths is not None:
            r, _ = torch.nn.utils.rnn.pad_packed_sequence(r, batch_first=True, total_length=T)
        backward_both(y, r, data)
    close(y.data, r, "output")
    close(xs.grad, xt.grad, "input grad", atol=1e-4)
    grads = dict(ref.named_parameters())
    for name, p in module.named_parameters():
        close(p.grad, grads[name].grad, f"{name} grad", rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------- convolution
@given(st.data())
def test_causal_conv1d_and_temporal_block(data: st.DataObject) -> None:
    B, T = data.draw(SMALL, label="B"), data.draw(SIZES, label="T")
    c_in, c_out = data.draw(SIZES, label="C_in"), data.draw(SIZES, label="C_out")
    K, d = data.draw(st.integers(1, 4), label="K"), data.draw(st.integers(1, 4), label="dilation")
    x = values(data, (B, T, c_in))
    w1, b1 = values(data, (c_out, c_in, K), 0.3), values(data, (c_out,))
    w2, b2 = values(data, (c_out, c_out, K), 0.3), values(data, (c_out,))
    wd, bd = values(data, (c_out, c_in), 0.3), values(data, (c_out,))
    block = data.draw(st.booleans(), label="temporal block")
    ours = [s(a) for a in (x, w1, b1, w2, b2, wd, bd)]
    theirs = [t(a) for a in (x, w1, b1, w2, b2, wd, bd)]

    def conv(xc: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return TF.conv1d(TF.pad(xc, (d * (K - 1), 0)), w, b, dilation=d)

    with threads(data.draw(st.integers(1, 3), label="threads")):
        xt = theirs[0].transpose(1, 2)
        if block:
            out = F.temporal_block(ours[0], *ours[1:5], ours[5], ours[6], dilation=d)
            h = TF.relu(conv(TF.relu(conv(xt, theirs[1], theirs[2])), theirs[3], theirs[4]))
            res = TF.linear(theirs[0], theirs[5], theirs[6]).transpose(1, 2)
            ref = TF.relu(h + res).transpose(1, 2)
        else:
            out = F.causal_conv1d(ours[0], ours[1], ours[2], dilation=d)
            ref = conv(xt, theirs[1], theirs[2]).transpose(1, 2)
        backward_both(out, ref, data)
    close(out.data, ref, "output", atol=1e-4)
    used = range(7) if block else range(3)
    for i in used:
        close(ours[i].grad, theirs[i].grad, f"grad {i}", rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------------- attention
@given(st.data())
def test_scaled_dot_product_attention(data: st.DataObject) -> None:
    B, H = data.draw(SMALL, label="B"), data.draw(SMALL, label="H")
    Tq, Tk = data.draw(SIZES, label="Tq"), data.draw(SIZES, label="Tk")
    D, Dv = data.draw(st.sampled_from([1, 3, 8, 16, 17]), label="D"), data.draw(SIZES, label="Dv")
    causal = data.draw(st.booleans(), label="causal")
    mask_kind = "none" if causal else data.draw(st.sampled_from(["none", "bool", "float"]), label="mask")
    flash = data.draw(st.booleans(), label="flash path")
    q, k, v = values(data, (B, H, Tq, D)), values(data, (B, H, Tk, D)), values(data, (B, H, Tk, Dv))
    mask = None
    if mask_kind != "none":  # a broadcast shape: each of B, H, Tq may be 1
        shape = tuple(n if data.draw(st.booleans()) else 1 for n in (B, H, Tq)) + (Tk,)
        m = np.random.default_rng(data.draw(st.integers(0, 999))).random(shape)
        if mask_kind == "bool":
            mask = m > 0.3
            mask[..., 0] = True  # every query sees a key (torch gives NaN for none)
        else:
            mask = (m * 4 - 2).astype(np.float32)
        mask = layout(data, mask)
    qs, ks, vs = s(q), s(k), s(v)
    qt, kt, vt = t(q), t(k), t(v)
    before = F.get_attention_flash_threshold()
    F.set_attention_flash_threshold(1 if flash else 1 << 30)
    try:
        with threads(data.draw(st.integers(1, 3), label="threads")):
            out = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, is_causal=causal)
            if causal and Tq > Tk:  # rows past the last key see none: torch NaN, seqlab zeros
                return
            tmask = None if mask is None else torch.tensor(np.array(mask, order="C"))
            ref = TF.scaled_dot_product_attention(qt, kt, vt, attn_mask=tmask, is_causal=causal)
            backward_both(out, ref, data)
    finally:
        F.set_attention_flash_threshold(before)
    close(out.data, ref, "output", atol=1e-4)
    for name, a, b in (("query", qs, qt), ("key", ks, kt), ("value", vs, vt)):
        close(a.grad, b.grad, f"{name} grad", rtol=1e-3, atol=1e-4)


@given(st.data())
def test_kv_cache_attention_equals_causal_attention(data: st.DataObject) -> None:
    B, heads = data.draw(SMALL, label="B"), data.draw(st.integers(1, 3), label="heads")
    hd = data.draw(st.sampled_from([1, 4, 16, 17]), label="head dim")
    pos, new = data.draw(st.integers(0, 9), label="pos"), data.draw(st.integers(1, 5), label="new")
    E, T = heads * hd, pos + new
    qkv_all = values(data, (B, T, 3 * E))
    qkv_all = np.array(qkv_all, order="C")
    kc = np.zeros((B, heads, T + 2, hd), np.float32)
    vc = np.zeros((B, heads, T + 2, hd), np.float32)
    if pos:
        F.kv_cache_attention(qkv_all[:, :pos], kc, vc, 0, heads)
    with threads(data.draw(st.integers(1, 3), label="threads")):
        out = F.kv_cache_attention(layout(data, qkv_all[:, pos:]), kc, vc, pos, heads)
    q, k, v = (torch.tensor(qkv_all[..., i * E:(i + 1) * E]).reshape(B, T, heads, hd).transpose(1, 2)
               for i in range(3))
    ref = TF.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, E)
    np.testing.assert_allclose(out, ref[:, pos:].numpy(), rtol=RTOL, atol=1e-4)


# ------------------------------------------------------------------------ top-k
@given(st.data())
def test_topk_equals_brute_force(data: st.DataObject) -> None:
    Q, N = data.draw(st.sampled_from([1, 2, 19, 20, 33]), label="Q"), data.draw(SIZES, label="N")
    D = data.draw(SIZES, label="D")
    k = data.draw(st.integers(1, N), label="k")
    metric = data.draw(st.sampled_from(["cosine", "ip", "l2"]), label="metric")
    path = data.draw(st.sampled_from(["auto", "simd", "gemm"]), label="path")
    q, bank = values(data, (Q, D)), values(data, (N, D))
    with threads(data.draw(st.integers(1, 3), label="threads")):
        scores, idx = topk(q, bank, k, metric, path=path)
    q64, b64 = q.astype(np.float64), bank.astype(np.float64)
    if metric == "cosine":
        q64 = q64 / np.maximum(np.linalg.norm(q64, axis=1, keepdims=True), 1e-12)
        b64 = b64 / np.maximum(np.linalg.norm(b64, axis=1, keepdims=True), 1e-12)
    full = ((q64[:, None] - b64[None]) ** 2).sum(-1) if metric == "l2" else q64 @ b64.T
    # the scores of the returned indices are theirs, and no better one was left out
    np.testing.assert_allclose(scores, np.take_along_axis(full, idx, 1), rtol=1e-4, atol=1e-4)
    order = np.sort(full, axis=1)
    best = order[:, :k] if metric == "l2" else order[:, ::-1][:, :k]
    np.testing.assert_allclose(scores, best, rtol=1e-4, atol=1e-4)
    assert all(len(set(row)) == k for row in idx.tolist())


# ------------------------------------------------- multi-head attention core, dropout
@given(st.data())
def test_multi_head_attention_core(data: st.DataObject) -> None:
    """Already projected heads in each layout (packed [q|k|v], packed [k|v], separate)
    against torch's ``multi_head_attention_forward`` with identity projections."""
    B, H = data.draw(SMALL, label="B"), data.draw(SMALL, label="heads")
    Dh = data.draw(st.sampled_from([1, 3, 8, 16, 17]), label="head dim")
    packing = data.draw(st.sampled_from(["qkv", "kv", "none"]), label="packing")
    Tq = data.draw(SIZES, label="Tq")
    Tk = Tq if packing == "qkv" else data.draw(SIZES, label="Tk")
    causal = Tq <= Tk and data.draw(st.booleans(), label="causal")
    E = H * Dh
    q, k, v = values(data, (B, Tq, E)), values(data, (B, Tk, E)), values(data, (B, Tk, E))
    rng = np.random.default_rng(data.draw(st.integers(0, 999), label="mask seed"))
    mask = None
    if data.draw(st.booleans(), label="attn mask"):  # additive, broadcast over B and H
        shape = (B * H if data.draw(st.booleans(), label="per batch and head") else 1, Tq, Tk)
        mask = (rng.random(shape) * 4 - 2).astype(np.float32)
    padding = None
    if data.draw(st.booleans(), label="key padding"):  # every query keeps key 0
        lengths = rng.integers(1, Tk + 1, size=B)
        padding = np.where(np.arange(Tk)[None, :] >= lengths[:, None], -np.inf, 0).astype(np.float32)
    need_weights = data.draw(st.booleans(), label="need weights")
    qt, kt, vt = t(q), t(k), t(v)
    if packing == "qkv":
        args = (s(np.concatenate([q, k, v], axis=-1)), None, None)
    elif packing == "kv":
        args = (s(q), s(np.concatenate([k, v], axis=-1)), None)
    else:
        args = (s(q), s(k), s(v))
    ours_mask = None if mask is None else mask.reshape(-1, H if mask.shape[0] > 1 else 1, Tq, Tk)
    with threads(data.draw(st.integers(1, 3), label="threads")):
        out, weights = F.multi_head_attention_core(*args, num_heads=H, attn_mask=ours_mask,
                                                   key_padding_bias=padding, is_causal=causal,
                                                   need_weights=need_weights)
        tmask = None if mask is None else torch.tensor(mask if mask.shape[0] > 1 else mask[0])
        if causal:
            triu = torch.triu(torch.full((Tq, Tk), float("-inf")), diagonal=1)
            tmask = triu if tmask is None else tmask + triu
        eye, zero = torch.eye(E), torch.zeros(E)
        ref, ref_weights = TF.multi_head_attention_forward(
            qt.transpose(0, 1), kt.transpose(0, 1), vt.transpose(0, 1), E, H, None,
            torch.zeros(3 * E), None, None, False, 0.0, eye, zero, training=False,
            key_padding_mask=None if padding is None else torch.tensor(padding),
            need_weights=need_weights, attn_mask=tmask, use_separate_proj_weight=True,
            q_proj_weight=eye, k_proj_weight=eye, v_proj_weight=eye, average_attn_weights=False)
        ref = ref.transpose(0, 1)
        backward_both(out, ref, data)
    close(out.data, ref, "output", atol=1e-4)
    assert (weights is None) == (not need_weights)
    if need_weights:
        close(weights, ref_weights, "weights", atol=1e-5)
    grads = [a.grad for a in args if a is not None]
    theirs = [qt.grad, kt.grad, vt.grad]
    if packing == "qkv":
        theirs = [torch.cat(theirs, dim=-1)]
    elif packing == "kv":
        theirs = [theirs[0], torch.cat(theirs[1:], dim=-1)]
    for i, (a, b) in enumerate(zip(grads, theirs, strict=True)):
        close(a, b, f"grad of input {i} ({packing})", rtol=1e-3, atol=1e-4)


@given(st.data())
def test_dropout_masks_scales_and_backpropagates_through_the_same_mask(data: st.DataObject) -> None:
    """PyTorch draws other masks, so the properties are checked, not equality: p=0 and
    eval mode are the identity, p=1 gives zeros, otherwise the kept fraction is within
    5 standard deviations of 1-p, kept values are x/(1-p), and the gradient is the
    upstream gradient through the same mask and scale."""
    shape = tuple(data.draw(st.lists(SIZES, min_size=1, max_size=3), label="shape"))
    p = data.draw(st.sampled_from([0.0, 1.0]) | st.floats(0.01, 0.99), label="p")
    training = data.draw(st.booleans(), label="training") if p in (0.0, 1.0) else True
    seqlab.manual_seed(data.draw(st.integers(0, 2**31 - 1), label="seqlab seed"))
    x = values(data, shape) + np.float32(3.0)  # no exact zeros: a zero output means dropped
    xs = s(x)
    out = F.dropout(xs, p, training)
    g = values(data, shape)
    out.backward(g)
    y, grad = out.data, xs.grad
    assert y.shape == grad.shape == shape  # type: ignore[union-attr]
    if p == 0.0 or not training:
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(grad, g)  # type: ignore[arg-type]
        return
    if p == 1.0:
        assert not y.any() and not grad.any()  # type: ignore[union-attr]
        return
    kept = y != 0
    n = kept.size
    assert abs(kept.mean() - (1 - p)) <= 5 * np.sqrt(p * (1 - p) / n) + 1 / n, (kept.mean(), p, n)
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-6)
    np.testing.assert_allclose(grad[kept], g[kept] / (1 - p), rtol=1e-6)  # type: ignore[index]
    assert not grad[~kept].any()  # type: ignore[index]
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\]"):
        F.dropout(xs, data.draw(st.sampled_from([-0.1, 1.5]), label="bad p"))


# ------------------------------------------- fused recurrent and pointer-generator decoders
@given(st.data())
def test_recurrent_decoder_teacher_forced(data: st.DataObject) -> None:
    """``nn.RecurrentDecoder`` (LSTM, GRU; with or without attention over a memory of drawn
    lengths), fully teacher-forced, against the PyTorch loop of tests/test_decoder.py:
    outputs and the gradients of every parameter, the initial states and the memory."""
    from test_decoder import compare  # the PyTorch twin and its comparison, reused

    cell = data.draw(st.sampled_from(["lstm", "gru"]), label="cell")
    heads = data.draw(st.sampled_from([1, 2, 4]), label="heads")
    hidden = heads * data.draw(st.sampled_from([1, 3, 4, 17]), label="head size")
    E = data.draw(SIZES, label="input size")
    attention = data.draw(st.booleans(), label="attention")
    A = data.draw(SIZES, label="attention dim") if attention else None
    out = data.draw(st.none() | SIZES, label="output size")
    B, T = data.draw(SMALL, label="B"), data.draw(st.integers(1, 9), label="T")
    S = data.draw(st.integers(1, 9), label="memory steps")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    lengths = None
    if attention and data.draw(st.booleans(), label="memory lengths"):
        lengths = rng.integers(1, S + 1, size=B)
    dec = RecurrentDecoder(E, hidden, cell=cell, attention_dim=A, num_heads=heads, output_size=out)
    with threads(data.draw(st.integers(1, 3), label="threads")):
        compare(torch, dec, rng, np.ones((B, T), dtype=bool), batch=B, steps=T, lengths=lengths,
                mem_steps=S, rtol=2e-4, atol=5e-5)


@given(st.data())
def test_pointer_generator_loss(data: st.DataObject) -> None:
    """``nn.PointerGeneratorDecoder``'s fused loss (repeated source ids, OOV slots, copy-only
    targets, masked steps, memory lengths) against the PyTorch twin of
    benchmarks/torch_twins.py, through tests/test_pointer_generator.py: the loss and the
    gradients of every input and parameter."""
    from test_pointer_generator import assert_parity, run_both  # the twin's harness, reused

    heads = data.draw(st.sampled_from([1, 2, 4]), label="heads")
    hidden = heads * data.draw(st.sampled_from([1, 3, 4, 17]), label="head size")
    E, V = data.draw(SIZES, label="input size"), data.draw(SIZES, label="vocab")
    A = data.draw(SIZES, label="memory dim")
    batch, steps = data.draw(SMALL, label="B"), data.draw(st.integers(1, 9), label="T")
    src, oov = data.draw(st.integers(2, 9), label="source length"), data.draw(st.integers(0, 4), label="oov")
    states = data.draw(st.booleans(), label="initial states")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    dec = nn.PointerGeneratorDecoder(E, hidden, V, A, num_heads=heads)
    with threads(data.draw(st.integers(1, 3), label="threads")):
        loss, ours, ref, theirs, twin = run_both(torch, dec, rng, batch, steps, src, oov, states)
    assert_parity(loss, ours, ref, theirs, dec, twin, rtol=1e-3, atol=5e-5)
