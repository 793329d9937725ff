"""Incremental attention against a key/value cache: against a naive reference, against the
full causal attention kernel, and its argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from seqlab import _core
from seqlab import functional as F


def naive_kv_attention(q, k_all, v_all, pos):
    """q (B, H, Tn, D) for positions pos..pos+Tn-1 over k_all, v_all (B, H, pos+Tn, D)."""
    B, H, Tn, D = q.shape
    out = np.zeros((B, H, Tn, v_all.shape[-1]), dtype=np.float64)
    for i in range(Tn):
        s = np.einsum("bhd,bhjd->bhj", q[:, :, i].astype(np.float64), k_all[:, :, : pos + i + 1]) / np.sqrt(D)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        p = s / s.sum(axis=-1, keepdims=True)
        out[:, :, i] = np.einsum("bhj,bhjd->bhd", p, v_all[:, :, : pos + i + 1])
    return out


@pytest.mark.parametrize("B,H,D,Tmax,steps", [(1, 2, 16, 12, (5, 1, 1, 3)), (2, 3, 20, 9, (1, 1, 1, 1, 1))])
def test_incremental_steps_match_naive(B, H, D, Tmax, steps):
    rng = np.random.default_rng(0)
    E = H * D
    total = sum(steps)
    qkv_all = rng.standard_normal((B, total, 3 * E)).astype(np.float32)
    kc = np.zeros((B, H, Tmax, D), np.float32)
    vc = np.zeros((B, H, Tmax, D), np.float32)
    heads = qkv_all.reshape(B, total, 3, H, D).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, D)
    pos = 0
    for n in steps:
        out = F.kv_cache_attention(qkv_all[:, pos : pos + n], kc, vc, pos, H)
        ref = naive_kv_attention(heads[0][:, :, pos : pos + n], heads[1], heads[2], pos)
        np.testing.assert_allclose(out.reshape(B, n, H, D).transpose(0, 2, 1, 3), ref, rtol=1e-5, atol=1e-5)
        pos += n
    np.testing.assert_array_equal(kc[:, :, :total], heads[1])
    np.testing.assert_array_equal(vc[:, :, :total], heads[2])


def test_prefill_equals_full_causal_attention():
    rng = np.random.default_rng(1)
    B, T, H, D = 2, 17, 4, 16
    qkv = rng.standard_normal((B, T, 3 * H * D)).astype(np.float32)
    kc = np.zeros((B, H, 32, D), np.float32)
    vc = np.zeros_like(kc)
    out = F.kv_cache_attention(qkv, kc, vc, 0, H)
    q, k, v = (qkv.reshape(B, T, 3, H, D)[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True).data
    np.testing.assert_allclose(out.reshape(B, T, H, D).transpose(0, 2, 1, 3), ref, rtol=1e-5, atol=1e-6)


def test_bad_arguments_name_what_is_wrong():
    q = np.zeros((1, 2, 1, 8), np.float32)
    kc = np.zeros((1, 2, 4, 8), np.float32)
    out = np.zeros((1, 2, 1, 8), np.float32)
    with pytest.raises(ValueError, match="exceed the cache length 4"):
        _core.kv_cache_attention(q, q, q, kc, kc.copy(), 4, out, 1.0)
    with pytest.raises(ValueError, match="key_cache"):
        _core.kv_cache_attention(q, q, q, np.zeros((1, 2, 4, 4), np.float32), kc, 0, out, 1.0)
    with pytest.raises(TypeError, match="float32"):
        _core.kv_cache_attention(q.astype(np.float64), q, q, kc, kc.copy(), 0, out, 1.0)
    with pytest.raises(ValueError, match="qkv"):
        F.kv_cache_attention(np.zeros((1, 1, 10), np.float32), kc, kc.copy(), 0, 2)
