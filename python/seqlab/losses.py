"""Reconstruction losses over sequences of vectors, masked by length.

All three are the one fused kernel ``seqlab.functional.cosine_mse_loss`` (one tape
node forward and backward). For pred and target ``(B, T, E)`` and each real token
``(b, t)`` with ``t < lengths[b]``::

    cos(p, y) = p . y / (max(|p|, 1e-8) * max(|y|, 1e-8))     # torch's cosine_similarity
    mse(p, y) = sum_e (p_e - y_e)^2 / E
    l(b, t)   = cosine_weight * (1 - cos(p, y)) / temperature + mse_weight * mse(p, y)

and the loss is the mean of ``l`` over the real tokens (``reduction="mean"``), their
sum (``"sum"``) or the ``(B, T)`` array of ``l`` with zeros at padding (``"none"``).
"""

from __future__ import annotations

from typing import Any

from .autograd import Tensor
from .functional import cosine_mse_loss

__all__ = ["cosine_loss", "cosine_mse_loss", "mse_loss"]


def cosine_loss(pred: Any, target: Any, lengths: Any = None, temperature: float = 1.0,
                reduction: str = "mean") -> Tensor:
    """Masked cosine distance ``(1 - cos(p, y)) / temperature`` per token.

    Shapes: pred, target (B, T, E); lengths (B,) or None. :func:`cosine_mse_loss`
    with weights (1, 0).
    """
    return cosine_mse_loss(pred, target, lengths, cosine_weight=1.0, mse_weight=0.0,
                           temperature=temperature, reduction=reduction)


def mse_loss(pred: Any, target: Any, lengths: Any = None, reduction: str = "mean") -> Tensor:
    """Masked mean squared error ``sum_e (p_e - y_e)^2 / E`` per token.

    Shapes: pred, target (B, T, E); lengths (B,) or None. With ``reduction="mean"`` it
    equals ``torch.nn.functional.mse_loss`` over the real tokens. :func:`cosine_mse_loss`
    with weights (0, 1).
    """
    return cosine_mse_loss(pred, target, lengths, cosine_weight=0.0, mse_weight=1.0,
                           temperature=1.0, reduction=reduction)
