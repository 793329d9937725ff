"""Global gradient-norm clipping, as ``torch.nn.utils.clip_grad_norm_``."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ... import _core
from ...autograd import Tensor


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0
) -> float:
    """Scales all gradients in place so that their joint norm is at most ``max_norm``.

    The total norm is the ``norm_type``-norm of all gradients taken together (``inf``:
    the largest absolute value); every gradient is multiplied by
    ``min(1, max_norm / (total + 1e-6))``. Parameters without a gradient are ignored.
    One C++ pass computes the norm and one scales.

    Returns:
        The total norm before clipping, as a float.
    """
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    if math.isnan(max_norm) or max_norm < 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    if math.isnan(norm_type) or norm_type <= 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be > 0 or inf, got {norm_type}")
    grads = []
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(
                f"clip_grad_norm_: parameters[{i}] is a {type(p).__name__}, not a Tensor"
            )
        if p.grad is None:
            continue
        g = p.grad
        if not isinstance(g, np.ndarray) or g.dtype != np.float32 or not g.flags.c_contiguous:
            g = np.ascontiguousarray(g, dtype=np.float32)
            p.grad = g
        grads.append(g)
    if not grads:
        return 0.0
    return float(_core.clip_grad_norm(grads, max_norm, norm_type))
