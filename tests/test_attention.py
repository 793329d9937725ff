"""Scaled dot-product attention against PyTorch: both kernel paths, every mask kind,
causal and not, Tq != Tk, head sizes 8..128, fully masked rows, dropout, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import seqlab
import seqlab.functional as F
from seqlab import _core
from seqlab.functional.attention import _attention_buffers as attention_buffers

RTOL, ATOL = 1e-4, 2e-5


@pytest.fixture(params=["plain", "flash"])
def path(request):
    """Forces one attention path for the test, restoring the threshold afterwards."""
    previous = F.set_attention_flash_threshold(0 if request.param == "flash" else 10**9)
    yield request.param
    F.set_attention_flash_threshold(previous)


def _inputs(rng, B, H, Tq, Tk, D, Dv):
    q = rng.standard_normal((B, H, Tq, D), dtype=np.float32)
    k = rng.standard_normal((B, H, Tk, D), dtype=np.float32)
    v = rng.standard_normal((B, H, Tk, Dv), dtype=np.float32)
    return q, k, v


def _compare(torch, rng, q, k, v, mask=None, causal=False, scale=None):
    """Runs both libraries forward and backward; asserts outputs and all three gradients."""
    qs, ks, vs = (seqlab.tensor(a, requires_grad=True) for a in (q, k, v))
    out = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, is_causal=causal, scale=scale)
    g = rng.standard_normal(out.shape, dtype=np.float32)
    out.backward(g)
    qt, kt, vt = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tmask = None if mask is None else torch.tensor(mask)
    ref = torch.nn.functional.scaled_dot_product_attention(
        qt, kt, vt, attn_mask=tmask, is_causal=causal, scale=scale
    )
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=RTOL, atol=ATOL)
    for name, ours, theirs in (("query", qs, qt), ("key", ks, kt), ("value", vs, vt)):
        np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=RTOL, atol=ATOL, err_msg=name)
    return out, (qs, ks, vs)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("Tq", "Tk"), [(70, 300), (300, 70), (64, 64)])
def test_matches_torch_no_mask(torch, rng, path, causal, Tq, Tk):
    q, k, v = _inputs(rng, 2, 3, Tq, Tk, 16, 24)
    _compare(torch, rng, q, k, v, causal=causal)


@pytest.mark.parametrize("D", [8, 32, 64, 128])
def test_head_sizes_and_batch_one(torch, rng, path, D):
    q, k, v = _inputs(rng, 1, 1, 90, 270, D, D)
    _compare(torch, rng, q, k, v, causal=True)


def test_bool_mask(torch, rng, path):
    q, k, v = _inputs(rng, 2, 2, 40, 280, 16, 16)
    mask = rng.random((40, 280)) > 0.3
    mask[:, 0] = True  # every row keeps a key (torch's flash kernel has no defined result otherwise)
    _compare(torch, rng, q, k, v, mask=mask)


def test_float_mask_broadcast_over_heads(torch, rng, path):
    q, k, v = _inputs(rng, 2, 3, 50, 260, 16, 8)
    mask = rng.standard_normal((2, 1, 50, 260)).astype(np.float32)
    _compare(torch, rng, q, k, v, mask=mask, scale=0.3)


def test_key_padding_as_bool_mask(torch, rng, path):
    q, k, v = _inputs(rng, 3, 2, 33, 270, 16, 16)
    lengths = np.array([270, 100, 5])
    keep = np.arange(270)[None, :] < lengths[:, None]
    _compare(torch, rng, q, k, v, mask=keep[:, None, None, :])


def test_three_dimensional_inputs(torch, rng, path):
    q = rng.standard_normal((4, 30, 16), dtype=np.float32)
    k = rng.standard_normal((4, 260, 16), dtype=np.float32)
    v = rng.standard_normal((4, 260, 16), dtype=np.float32)
    _compare(torch, rng, q, k, v, causal=True)


def test_default_threshold_picks_each_path(torch, rng):
    """Lengths on both sides of the default switch, through the public function."""
    threshold = F.get_attention_flash_threshold()
    assert threshold > 64
    for causal in (False, True):
        switch = threshold
        assert F.attention_path(switch - 1) == "plain"
        assert F.attention_path(switch) == "flash"
        for T in (switch - 9, switch + 37):
            q, k, v = _inputs(rng, 1, 2, T, T, 8, 8)
            _compare(torch, rng, q, k, v, causal=causal)


def test_flash_workspace_is_linear_in_sequence(rng):
    B, H, T, D = 2, 2, 1024, 16
    q, k, v = _inputs(rng, B, H, T, T, D, D)
    out = np.empty((B, H, T, D), dtype=np.float32)
    _, flash = _core.attention_forward(q, k, v, out, flash=True)
    _, plain = _core.attention_forward(q, k, v, out, flash=False)
    assert flash.flash and not plain.flash
    assert flash.workspace_bytes == B * H * T * 4
    assert plain.workspace_bytes == B * H * T * T * 4


def test_fully_masked_rows_give_zeros_and_zero_grad(torch, rng, path):
    q, k, v = _inputs(rng, 1, 2, 20, 270, 16, 16)
    mask = rng.random((20, 270)) > 0.5
    mask[:, 0] = True
    mask[3] = False  # row 3 sees nothing
    mask[11] = False
    qs, ks, vs = (seqlab.tensor(a, requires_grad=True) for a in (q, k, v))
    out = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask)
    out.backward(np.ones(out.shape, dtype=np.float32))
    assert np.all(np.isfinite(out.data)) and np.all(np.isfinite(qs.grad))
    assert np.all(np.isfinite(ks.grad)) and np.all(np.isfinite(vs.grad))
    np.testing.assert_array_equal(out.data[:, :, [3, 11]], 0.0)
    np.testing.assert_array_equal(qs.grad[:, :, [3, 11]], 0.0)
    # The other rows are unaffected: same as torch with those rows unmasked then dropped.
    mask2 = mask.copy()
    mask2[[3, 11]] = True
    ref = torch.nn.functional.scaled_dot_product_attention(
        torch.tensor(q), torch.tensor(k), torch.tensor(v), attn_mask=torch.tensor(mask2)
    ).numpy()
    rows = [i for i in range(20) if i not in (3, 11)]
    np.testing.assert_allclose(out.data[:, :, rows], ref[:, :, rows], rtol=RTOL, atol=ATOL)
    assert np.abs(qs.grad[:, :, rows]).max() > 0


def test_causal_more_keys_than_queries_row_zero_sees_one_key(rng, path):
    q, k, v = _inputs(rng, 1, 1, 5, 300, 8, 8)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    np.testing.assert_allclose(out.data[0, 0, 0], v[0, 0, 0], rtol=1e-6)



# Key lengths and head sizes that are multiples of 16 take the plain path's unpacked
# AVX-512 GEMM kernel (S and dP over K^T, V^T); the others above take OpenBLAS.
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("Tq", "Tk"), [(100, 272), (272, 96), (13, 16)])
def test_unpacked_kernel_shapes_match_torch(torch, rng, path, causal, Tq, Tk):
    q, k, v = _inputs(rng, 2, 2, Tq, Tk, 48, 32)
    _compare(torch, rng, q, k, v, causal=causal)


def test_unpacked_kernel_shapes_with_masks_and_masked_rows(torch, rng, path):
    q, k, v = _inputs(rng, 2, 3, 37, 288, 64, 80)
    mask = rng.random((2, 1, 37, 288)) > 0.4
    mask[..., 0] = True
    _compare(torch, rng, q, k, v, mask=mask)
    mask[:, :, 5] = False  # a row that sees nothing: zeros and zero gradients
    qs, ks, vs = (seqlab.tensor(a, requires_grad=True) for a in (q, k, v))
    out = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask)
    out.backward(np.ones(out.shape, dtype=np.float32))
    np.testing.assert_array_equal(out.data[:, :, 5], 0.0)
    np.testing.assert_array_equal(qs.grad[:, :, 5], 0.0)
    assert np.all(np.isfinite(ks.grad)) and np.all(np.isfinite(vs.grad))

def test_dropout_same_on_both_paths_and_consistent_with_weights(rng):
    q, k, v = _inputs(rng, 2, 2, 40, 300, 16, 16)
    results = []
    previous = F.get_attention_flash_threshold()
    for threshold in (0, 10**9):
        F.set_attention_flash_threshold(threshold)
        seqlab.manual_seed(7)
        qs, ks, vs = (seqlab.tensor(a, requires_grad=True) for a in (q, k, v))
        out = F.scaled_dot_product_attention(qs, ks, vs, dropout_p=0.4)
        out.backward(np.ones(out.shape, dtype=np.float32))
        results.append((out.data, qs.grad, ks.grad, vs.grad))
    F.set_attention_flash_threshold(previous)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # The weights after dropout times V give the output; about 40% of them are dropped.
    out = np.empty((2, 2, 40, 16), dtype=np.float32)
    w, _ = _core.attention_forward(q, k, v, out, scale=0.25, dropout_p=0.4, seed=3, need_weights=True)
    np.testing.assert_allclose(out, w @ v, rtol=1e-4, atol=1e-5)
    assert 0.37 < np.mean(w == 0) < 0.43
    kept = w[w > 0]
    assert kept.size > 0
    # Kept weights are rescaled: rows sum to about 1 on average.
    assert abs(w.sum(-1).mean() - 1.0) < 0.05


def test_dropout_gradient_matches_finite_differences(rng):
    q, k, v = _inputs(rng, 1, 1, 6, 9, 4, 4)
    previous = F.set_attention_flash_threshold(0)
    try:

        def loss(qa):
            seqlab.manual_seed(5)
            return float(
                F.scaled_dot_product_attention(qa, k, v, dropout_p=0.3).data.astype(np.float64).sum()
            )

        seqlab.manual_seed(5)
        qs = seqlab.tensor(q, requires_grad=True)
        F.scaled_dot_product_attention(qs, k, v, dropout_p=0.3).sum().backward()
        eps = 1e-2
        for idx in [(0, 0, 0, 0), (0, 0, 3, 2), (0, 0, 5, 1)]:
            qp, qm = q.copy(), q.copy()
            qp[idx] += eps
            qm[idx] -= eps
            numeric = (loss(qp) - loss(qm)) / (2 * eps)
            assert abs(numeric - qs.grad[idx]) < 2e-3 * max(1.0, abs(numeric))
    finally:
        F.set_attention_flash_threshold(previous)


def test_bad_shapes_raise_value_error(rng):
    q, k, v = _inputs(rng, 2, 2, 10, 12, 8, 8)
    with pytest.raises(ValueError, match="key"):
        F.scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="value"):
        F.scaled_dot_product_attention(q, k, v[:, :, :5])
    with pytest.raises(ValueError, match="batch/head"):
        F.scaled_dot_product_attention(q, k[:1], v[:1])
    with pytest.raises(ValueError, match="attn_mask"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((10, 5), dtype=bool))
    with pytest.raises(ValueError, match="not both"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((10, 12), dtype=bool), is_causal=True)
    with pytest.raises(ValueError, match="dropout_p"):
        F.scaled_dot_product_attention(q, k, v, dropout_p=1.5)
    with pytest.raises(TypeError, match="attn_mask"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((10, 12), dtype=np.int64))
    out = np.empty((2, 2, 10, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="out"):
        _core.attention_forward(q, k, v, out[:, :1])
    with pytest.raises(TypeError, match="query"):
        _core.attention_forward(q.astype(np.float64), k, v, out)


def test_kernel_buffers_recycled_between_steps(rng, path):
    F.clear_attention_workspace()
    q, k, v = _inputs(rng, 2, 2, 30, 40, 8, 8)
    g = rng.standard_normal((2, 2, 30, 8), dtype=np.float32)
    results = []
    for _ in range(3):
        qs, ks = seqlab.tensor(q, requires_grad=True), seqlab.tensor(k, requires_grad=True)
        out = F.scaled_dot_product_attention(qs, ks, v, is_causal=True)
        out.backward(g)
        results.append((out.data, qs.grad, ks.grad))
    for later in results[1:]:
        for a, b in zip(results[0], later):
            np.testing.assert_array_equal(a, b)
    # As in PyTorch, the node's buffers are freed by its backward: a second one raises.
    qs = seqlab.tensor(q, requires_grad=True)
    out = F.scaled_dot_product_attention(qs, k, v)
    out.backward(g)
    with pytest.raises(RuntimeError, match="already used by a backward"):
        out.backward(g)
    # Inference recycles too, and a cache still waiting for its backward cannot be reused.
    with seqlab.no_grad():
        a = F.scaled_dot_product_attention(q, k, v).data
        b = F.scaled_dot_product_attention(q, k, v).data
    np.testing.assert_array_equal(a, b)
    out = np.empty((2, 2, 30, 8), dtype=np.float32)
    _, pending = _core.attention_forward(q, k, v, out)
    with pytest.raises(ValueError, match="reuse"):
        _core.attention_forward(q, k, v, out, reuse=pending)
    F.clear_attention_workspace()


def test_same_bits_for_any_thread_count(rng, path):
    """Each head (and query tile) is computed by one thread with single-threaded GEMMs."""
    q, k, v = _inputs(rng, 3, 2, 70, 300, 16, 16)
    mask = rng.standard_normal((70, 300)).astype(np.float32)
    results = []
    previous = seqlab.get_num_threads()
    try:
        for threads in (1, 2, 3):
            seqlab.set_num_threads(threads)
            seqlab.manual_seed(11)
            qs, ks, vs = (seqlab.tensor(a, requires_grad=True) for a in (q, k, v))
            out = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, dropout_p=0.2)
            out.backward(np.ones(out.shape, dtype=np.float32))
            results.append((out.data, qs.grad, ks.grad, vs.grad))
    finally:
        seqlab.set_num_threads(previous)
    for later in results[1:]:
        for a, b in zip(results[0], later):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("causal", [False, True])
def test_overwritten_gradients_equal_accumulated_into_zeros(rng, path, causal):
    """overwrite=(...) writes into garbage buffers what accumulation adds to zeros, including
    key rows no query sees (causal, more keys than queries)."""
    q, k, v = _inputs(rng, 2, 3, 20, 90, 16, 8)
    g = rng.standard_normal((2, 3, 20, 8), dtype=np.float32)
    flash = path == "flash"
    grads = []
    for overwrite in (None, (True, True, True), (True, False, True)):
        out = np.empty((2, 3, 20, 8), dtype=np.float32)
        _, cache = _core.attention_forward(q, k, v, out, scale=0.25, causal=causal, flash=flash)
        bufs = [np.zeros_like(a) for a in (q, k, v)]
        if overwrite is not None:
            for b, flag in zip(bufs, overwrite):
                if flag:
                    b[...] = np.nan
        _core.attention_backward(cache, g, *bufs, overwrite=overwrite)
        grads.append(bufs)
    for later in grads[1:]:
        for a, b in zip(grads[0], later):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="overwrite: expected 3 flags"):
        _, cache = _core.attention_forward(q, k, v, np.empty((2, 3, 20, 8), np.float32))
        _core.attention_backward(cache, g, None, None, None, overwrite=(True,))


def test_existing_leaf_gradients_are_added_to_and_aliased_inputs(torch, rng, path):
    q, k, _ = _inputs(rng, 2, 2, 30, 40, 8, 8)
    g = rng.standard_normal((2, 2, 30, 8), dtype=np.float32)
    qs, ks = seqlab.tensor(q, requires_grad=True), seqlab.tensor(k, requires_grad=True)
    qs.grad = np.ones_like(q)
    F.scaled_dot_product_attention(qs, ks, ks, is_causal=True).backward(g)  # key is value
    qt, kt = torch.tensor(q, requires_grad=True), torch.tensor(k, requires_grad=True)
    torch.nn.functional.scaled_dot_product_attention(qt, kt, kt, is_causal=True).backward(torch.tensor(g))
    np.testing.assert_allclose(qs.grad, 1.0 + qt.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(ks.grad, kt.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_output_and_gradient_buffers_reused_only_when_unreferenced(rng):
    q, k, v = _inputs(rng, 2, 4, 128, 128, 64, 64)  # 256 KiB per buffer: pooled
    previous = attention_buffers.min_bytes
    attention_buffers.min_bytes = 1 << 16
    try:
        F.clear_attention_workspace()
        qs, ks, vs = (seqlab.tensor(a, requires_grad=True) for a in (q, k, v))
        first = F.scaled_dot_product_attention(qs, ks, vs)
        first.backward(np.ones(first.shape, dtype=np.float32))
        kept_out, kept_grad = first.data, qs.grad  # still referenced: never handed out again
        expected = (kept_out.copy(), kept_grad.copy())
        for t in (qs, ks, vs):
            t.grad = None
        second = F.scaled_dot_product_attention(qs, ks, vs)
        second.backward(np.ones(second.shape, dtype=np.float32))
        assert not np.shares_memory(second.data, kept_out)
        assert not any(np.shares_memory(t.grad, kept_grad) for t in (qs, ks, vs))
        np.testing.assert_array_equal(kept_out, expected[0])
        np.testing.assert_array_equal(kept_grad, expected[1])
        np.testing.assert_array_equal(second.data, expected[0])
        np.testing.assert_array_equal(qs.grad, expected[1])
        # Once nothing refers to them, the next step writes into the same buffers.
        address = second.data.__array_interface__["data"][0]
        del first, kept_out, kept_grad, second
        for t in (qs, ks, vs):
            t.grad = None
        third = F.scaled_dot_product_attention(qs, ks, vs)
        pooled = {b.__array_interface__["data"][0] for b in attention_buffers.blocks}
        assert third.data.__array_interface__["data"][0] in pooled
        assert address in pooled
        np.testing.assert_array_equal(third.data, expected[0])
    finally:
        attention_buffers.min_bytes = previous
        F.clear_attention_workspace()
