"""Reconstruction metrics for sequences of vectors: token- and sequence-level cosine."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from ._checks import f32_contiguous, float_array, mask_array, require_finite_rows, same_shape

__all__ = ["sequence_cosine", "token_cosine"]


def _pair(pred: Any, target: Any, ndims: tuple[int, ...], expected: str) -> tuple[
    np.ndarray, np.ndarray
]:
    p = float_array(pred, "pred", ndims, expected)
    t = float_array(target, "target", ndims, expected)
    same_shape(p, t, "pred", "target")
    if p.shape[-1] == 0:
        raise ValueError("pred: feature dimension D is 0")
    require_finite_rows(p, "pred")
    require_finite_rows(t, "target")
    return p, t


def token_cosine(pred: Any, target: Any, mask: Any = None) -> float:
    """Mean cosine similarity over real tokens.

    Args:
        pred, target: (B, T, D) or (N, D).
        mask: (B, T) (or (N,)) bool/0-1, True for real tokens; None counts every token.

    Returns:
        The mean over real tokens of cos(pred[b, t], target[b, t]); a zero vector has
        cosine 0 with everything.
    """
    p, t = _pair(pred, target, (2, 3), "(B, T, D) or (N, D)")
    lead = p.shape[:-1]
    m = None if mask is None else mask_array(mask, lead)
    a = f32_contiguous(p.reshape(-1, p.shape[-1]))
    b = f32_contiguous(t.reshape(-1, t.shape[-1]))
    flat_mask = None if m is None else np.ascontiguousarray(m.reshape(-1), dtype=np.uint8)
    count = a.shape[0] if flat_mask is None else int(flat_mask.sum())
    if count == 0:
        raise ValueError(f"mask: selects no tokens (pred shape {p.shape})")
    cos = _core.rowwise_cosine(a, b, flat_mask)
    return float(cos.sum(dtype=np.float64) / count)


def sequence_cosine(pred: Any, target: Any, mask: Any = None) -> float:
    """Mean over sequences of the cosine between the masked means of pred and target.

    Args:
        pred, target: (B, T, D).
        mask: (B, T) bool/0-1, True for real tokens; None counts every token. Every
            sequence needs at least one real token.

    Returns:
        mean_b cos(mean_t pred[b, t], mean_t target[b, t]) over real tokens t.
    """
    p, t = _pair(pred, target, (3,), "(B, T, D)")
    if p.shape[1] == 0:
        raise ValueError(f"pred: sequences are empty, shape {p.shape}")
    if mask is None:
        pm = p.mean(axis=1, dtype=np.float64)
        tm = t.mean(axis=1, dtype=np.float64)
    else:
        m = mask_array(mask, p.shape[:2])
        n = m.sum(1)
        if (n == 0).any():
            raise ValueError(f"mask: sequence {int(np.flatnonzero(n == 0)[0])} has no real "
                             f"tokens (mask shape {m.shape})")
        w = m[:, :, None].astype(np.float64)
        pm = (p * w).sum(1) / n[:, None]
        tm = (t * w).sum(1) / n[:, None]
    cos = _core.rowwise_cosine(f32_contiguous(pm), f32_contiguous(tm), None)
    return float(cos.mean(dtype=np.float64))
