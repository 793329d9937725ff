"""Losses, each one fused kernel: the masked cosine + MSE loss and softmax cross-entropy."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from ..autograd import Tensor, make_result
from ._common import _float_input, _grad

_REDUCTIONS = ("mean", "sum", "none")


def cosine_mse_loss(
    pred: Any,
    target: Any,
    lengths: Any = None,
    cosine_weight: float = 0.9,
    mse_weight: float = 0.1,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """Masked hybrid loss ``cosine_weight * (1 - cos) / temperature + mse_weight * MSE`` per token.

    Shapes: pred, target (B, T, E); lengths (B,) ints in [0, T] or None (all T). For
    each real token (t < lengths[b]):
    ``cos = p.y / (max(|p|, 1e-8) * max(|y|, 1e-8))`` (torch's ``cosine_similarity``,
    each norm clamped) and ``MSE = sum_e (p_e - y_e)^2 / E``. ``reduction``: "mean"
    (over real tokens; 0 when there are none), "sum", or "none" (the per-token (B, T)
    losses, 0 at padding). One fused kernel forward and backward; gradients flow to
    pred and, when it requires them, target.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
    p = _float_input(pred, "pred")
    y = _float_input(target, "target")
    if p.shape != y.shape:
        raise ValueError(f"target: expected the shape of pred {p.shape}, got {y.shape}")
    if p.ndim != 3:
        raise ValueError(f"pred: expected a (batch, seq, features) array, got shape {p.shape}")
    lens = None
    if lengths is not None:
        arr = np.asarray(lengths.data if isinstance(lengths, Tensor) else lengths)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
        lens = np.ascontiguousarray(arr, dtype=np.int64)
    weights = (float(cosine_weight), float(mse_weight), float(temperature))
    total, count, tokens = _core.cosine_mse_forward(p.data, y.data, lens, *weights)
    if reduction == "none":
        out = tokens
    elif reduction == "sum":
        out = np.array(total, dtype=np.float32)
    else:
        out = np.array(total / count if count else 0.0, dtype=np.float32)

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        if reduction == "none":
            token_grad, scale = _grad(g), 0.0
        else:
            token_grad = None
            scale = float(g) / (count if reduction == "mean" and count else 1.0)
        dp, dy = _core.cosine_mse_backward(p.data, y.data, lens, *weights, token_grad, scale,
                                           p.requires_grad, y.requires_grad)
        return dp, dy

    return make_result(out, (p, y), backward)



def cross_entropy(
    input: Any,
    target: Any,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """Softmax cross-entropy of logits against integer class targets, fused in one kernel.

    Shapes: input (N, C) or (*, C) with the classes on the LAST axis (the layout of a
    language model's (B, T, V) logits; torch puts them on axis 1 for more than 2
    dimensions), target (N,) or (*) int64. Rows whose target equals ``ignore_index``
    contribute nothing. ``label_smoothing`` e mixes the one-hot target with the uniform
    distribution as torch does: ``(1 - e) * nll + e * mean_j(-log p_j)``.
    ``reduction``: ``"mean"`` (over non-ignored rows; 0 when every row is ignored, where
    torch gives NaN), ``"sum"`` or ``"none"`` (shape of target). The kernel keeps only one
    log-sum per row (relative to the row max, for precision with large logits); the backward
    recomputes the max and the softmax while writing the gradient.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
    x = _float_input(input)
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"target: expected integer class indices (int64), got dtype {t.dtype}")
    if x.ndim < 1 or t.shape != x.shape[:-1]:
        raise ValueError(
            f"cross_entropy: target shape {t.shape} must equal input shape {x.shape} without its last "
            "(class) axis"
        )
    V = x.shape[-1]
    x2 = x.data.reshape(-1, V)
    t1 = np.ascontiguousarray(t, dtype=np.int64).reshape(-1)
    loss, logsum = _core.cross_entropy_forward(x2, t1, int(ignore_index), float(label_smoothing))
    if reduction == "none":
        out = loss.reshape(t.shape)
        weight = None
    else:
        total = np.float32(loss.sum(dtype=np.float64))
        count = int(np.count_nonzero(t1 != ignore_index))
        div = np.float32(max(count, 1)) if reduction == "mean" else np.float32(1.0)
        out = np.asarray(total / div, dtype=np.float32)
        weight = div

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        if weight is None:
            gl = _grad(g).reshape(-1)
        else:
            gl = np.full(t1.shape, np.float32(g) / weight, dtype=np.float32)
        gx = _core.cross_entropy_backward(x2, t1, logsum, gl, int(ignore_index), float(label_smoothing))
        return (gx.reshape(x.shape),)

    return make_result(out, (x,), backward)
