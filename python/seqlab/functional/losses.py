"""Losses, each one fused kernel: the masked cosine + MSE loss, softmax cross-entropy, and the
output layer fused with its cross-entropy."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from ..autograd import Tensor, grad_buffer, is_grad_enabled, make_result, returned_grad
from ._common import _float_input, _grad
from .attention import _BufferPool
from .dense import bf16_gemm_engine, get_gemm_precision, linear

_REDUCTIONS = ("mean", "sum", "none")
# The fused output layer's scratch and gradients, reused from step to step (no page faults).
_loss_buffers = _BufferPool(limit=8)


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


def linear_cross_entropy(input: Any, weight: Tensor, target: Any, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy of the logits ``input @ weight.T`` against ``target``, fused: the
    same value and gradients as ``cross_entropy(linear(input, weight), target)`` without
    ever holding the (N, V) logits (a language model's tied output layer and its loss).

    Shapes: input (*, D), weight (V, D), target (*) int64 (the shape of input without its
    last axis) -> a scalar. Rows whose target equals ``ignore_index`` contribute nothing;
    the mean is over the other rows (0 when every row is ignored, where torch gives NaN).
    The kernel walks blocks of rows, each block's logits in cache: GEMM, log-sum-exp and
    loss, then the logits' gradient in place and, when a gradient is needed, the block's
    input gradient and its share of the weight gradient (three GEMMs, as unfused). The
    gradients are formed in the forward and only scaled by the upstream gradient in the
    backward; the weight's gradient accumulates into ``weight.grad`` (a tied embedding's).
    As in PyTorch, a second backward through the same node raises RuntimeError.
    Under ``gemm_precision("bf16")`` the three products run in bf16 on AMX tiles (operands
    rounded to bf16, fp32 accumulation, the softmax in fp32), still fused, with the same
    bits at any thread count; where the bf16 GEMMs are not on AMX
    (:func:`~seqlab.functional.bf16_gemm_engine` is not ``"amx"``) it runs unfused,
    ``cross_entropy(linear(...))`` in bf16. The kernel's scratch and the gradients come
    from buffers reused between calls.
    """
    x = _float_input(input)
    w = _float_input(weight, "weight")
    bf16 = get_gemm_precision() == "bf16"
    if bf16 and bf16_gemm_engine() != "amx":
        return cross_entropy(linear(x, w), target, ignore_index=ignore_index)
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"target: expected integer class indices (int64), got dtype {t.dtype}")
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"linear_cross_entropy: input {x.shape} and weight {w.shape} do not fit: expected input "
            "(*, D) and weight (V, D)"
        )
    if t.shape != x.shape[:-1]:
        raise ValueError(
            f"linear_cross_entropy: target shape {t.shape} must equal input shape {x.shape} without its "
            "last (feature) axis"
        )
    x2 = x.data.reshape(-1, x.shape[-1])
    t1 = np.ascontiguousarray(t, dtype=np.int64).reshape(-1)
    need_grad = is_grad_enabled() and (x.requires_grad or w.requires_grad)
    N, D = x2.shape
    V = w.shape[0]
    scratch_bytes = _core.linear_cross_entropy_workspace(N, D, V, need_grad, bf16)
    workspace = _loss_buffers.empty(((scratch_bytes + 3) // 4,))
    gx = _loss_buffers.empty((N, D)) if need_grad else None
    gw = _loss_buffers.empty((V, D)) if need_grad else None
    loss, count, dx, dw = _core.linear_cross_entropy(
        x2, w.data, t1, int(ignore_index), need_grad, bf16, gx, gw, workspace
    )
    del workspace, gx, gw
    out = np.asarray(np.float32(loss.sum(dtype=np.float64)) / np.float32(max(count, 1)), dtype=np.float32)

    grads = {"dx": dx, "dw": dw}  # consumed (scaled in place) by the one backward

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        if not grads:
            raise RuntimeError(
                "linear_cross_entropy: backward through this node ran already (its gradients are "
                "freed, as PyTorch frees a graph after backward); run the forward again"
            )
        dx, dw = grads.pop("dx"), grads.pop("dw")
        scale = np.float32(g)
        if scale != 1.0:
            np.multiply(dx, scale, out=dx)
            np.multiply(dw, scale, out=dw)
        gw = grad_buffer(w)
        if gw is not None:
            np.add(gw, dw, out=gw)
        return (dx.reshape(x.shape) if x.requires_grad else None), returned_grad(w, gw)

    return make_result(out, (x, w), backward)
