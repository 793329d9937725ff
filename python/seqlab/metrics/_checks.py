"""Argument conversion and validation shared by the metrics (errors name the argument)."""

from __future__ import annotations

from typing import Any

import numpy as np


def shape_str(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(str(s) for s in shape) + ")"


def as_array(x: Any) -> np.ndarray:
    """An ndarray view of x (a seqlab.Tensor's data, an ndarray or memmap, or a sequence)."""
    data = getattr(x, "data", None)
    if isinstance(data, np.ndarray) and not isinstance(x, np.ndarray):
        return data
    return np.asarray(x)


def float_array(x: Any, name: str, ndims: tuple[int, ...], expected: str) -> np.ndarray:
    """x as a floating array of one of the ranks ``ndims`` (no copy when already float)."""
    a = as_array(x)
    if a.ndim not in ndims:
        raise ValueError(f"{name}: expected shape {expected}, got {shape_str(a.shape)}")
    if not np.issubdtype(a.dtype, np.floating):
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
            raise TypeError(f"{name}: expected a float array, got dtype {a.dtype}")
        a = a.astype(np.float32)
    return a


def f32_contiguous(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def require_finite_rows(a: np.ndarray, name: str) -> None:
    """Raises ValueError naming the first row (leading index) with NaN or Inf."""
    if a.size and not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        where = ", ".join(str(int(i)) for i in bad[:-1]) if a.ndim > 1 else str(int(bad[0]))
        raise ValueError(
            f"{name}: row {where} of shape {shape_str(a.shape)} contains NaN or Inf"
        )


def same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b}: shapes differ, {name_a} {shape_str(a.shape)}, "
            f"{name_b} {shape_str(b.shape)}"
        )


def mask_array(mask: Any, lead_shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    """A boolean mask whose shape equals ``lead_shape`` (the leading dimensions of the data)."""
    m = as_array(mask)
    if m.shape != lead_shape:
        raise ValueError(
            f"{name}: expected shape {shape_str(lead_shape)}, got {shape_str(m.shape)}"
        )
    if m.dtype == np.bool_:
        return m
    if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
        raise TypeError(f"{name}: expected a bool or numeric array, got dtype {m.dtype}")
    return m != 0
