"""Helpers every op family shares: input checks, gradient layout, reuse of kernel caches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..autograd import Tensor


def _float_input(x: Any, name: str = "input") -> Tensor:
    """``x`` as a float32 Tensor (ndarrays and numbers are wrapped; other dtypes refused)."""
    t = x if isinstance(x, Tensor) else Tensor(x)
    if t.data.dtype != np.float32:
        raise TypeError(f"{name}: expected float32 values, got dtype {t.data.dtype}")
    return t


def _grad(g: np.ndarray) -> np.ndarray:
    """An upstream gradient as the C-contiguous float32 array the kernels take (views from
    transpose, split or stack backward may be strided). A 0-d gradient stays 0-d
    (``np.ascontiguousarray`` would make it (1,), which the kernels refuse)."""
    return np.asarray(g, dtype=np.float32, order="C")


# Kernel caches whose backward has run (or whose forward recorded no graph) are kept, at
# most this many, and handed to later forwards, which reuse their workspaces (attention's
# probability or logsumexp buffers, convolution's weight copies) instead of allocating
# and page-faulting new ones every step. A released cache holds no reference to any
# input; as in PyTorch, a second backward through the same node raises RuntimeError.
_MAX_SPARE_CACHES = 16


def _take_spare(spares: list) -> Any:
    """A released kernel cache to reuse, or None."""
    return spares.pop() if spares else None


def _keep_spare(spares: list, cache: Any, release: Callable[[Any], None] | None = None) -> None:
    """Hands a kernel cache back for reuse (after ``release`` drops its references to the
    inputs, when its backward will not run); at most ``_MAX_SPARE_CACHES`` are kept."""
    if release is not None:
        release(cache)
    if len(spares) < _MAX_SPARE_CACHES:
        spares.append(cache)
