"""The next-vector loss: MSE + cosine distance + InfoNCE on L2-normalised predictions.

One tape node with an analytic backward: the predictions are gathered from the model's
``(B, S, D)`` outputs, normalised, scored against their targets and against every other
target of the micro-batch (in-batch negatives) plus optional mined hard negatives, and
the gradient is scattered back through the normalisation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...autograd import Tensor, make_result


def _log_softmax_rows(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log-probabilities, probabilities) of each row."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    return shifted - np.log(total), exp / total


def next_vector_loss(
    outputs: Tensor,
    positions: np.ndarray,
    targets: np.ndarray,
    cosine_weight: float = 0.5,
    infonce_weight: float = 0.05,
    temperature: float = 0.05,
    negatives: np.ndarray | None = None,
    negative_mask: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    bank: np.ndarray | None = None,
    target_rows: np.ndarray | None = None,
) -> Tensor:
    """``mean MSE(p, t) + cosine_weight * mean(1 - p.t) + infonce_weight * InfoNCE``.

    Args:
        outputs: ``(B, S, D)`` unnormalised predictions (a Tensor).
        positions: ``(M,)`` flat indices into ``B * S`` of the positions that have a target.
        targets: ``(M, D)`` unit target vectors.
        temperature: InfoNCE logits are ``p . t_j / temperature`` over the M targets of
            the batch (row i's positive is target i) and the hard negatives.
        negatives: ``(M, K, D)`` unit hard negatives per target, or None;
            ``negative_mask`` ``(M, K)`` bool marks the real ones (True).
        groups: ``(M,)`` ids; targets of the same group (the same chain segment) are not
            used as each other's in-batch negatives. Within a segment the previous
            target *is* the current input, so it would teach the model mostly to move
            away from its last vector rather than towards the next.
        bank, target_rows: ``(N, D)`` unit vectors and the ``(M,)`` row of each target in
            it. Given, InfoNCE ranks each target among the whole bank instead of the batch
            (a softmax over ``p . bank_j / temperature``, the target's row the positive),
            as Hit@K and MRR rank a prediction among a bank of every vector, the window's
            own vectors included; ``negatives`` and ``groups`` are then not used.

    MSE is the mean over all M x D elements (``torch.nn.functional.mse_loss``); the
    predictions are ``p = y / max(|y|, 1e-12)``.

    Returns a scalar Tensor.
    """
    y_all = outputs.data.reshape(-1, outputs.shape[-1])
    y = y_all[positions]
    m, d = y.shape
    if targets.shape != (m, d):
        raise ValueError(f"targets: expected shape {(m, d)}, got {targets.shape}")
    norms = np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    p = y / norms
    diff = p - targets
    mse = float(np.mean(diff * diff))
    cos = np.einsum("ij,ij->i", p, targets)
    cosine = float(np.mean(1.0 - cos))
    total = mse + cosine_weight * cosine
    inv_t = 1.0 / temperature
    probs = probs_neg = None
    if bank is not None:
        if target_rows is None or target_rows.shape != (m,):
            raise ValueError(f"target_rows: expected shape {(m,)} with a bank, got "
                             f"{None if target_rows is None else target_rows.shape}")
        if bank.ndim != 2 or bank.shape[1] != d:
            raise ValueError(f"bank: expected shape (N, {d}), got {bank.shape}")
    if infonce_weight > 0 and bank is not None:
        logp, probs = _log_softmax_rows((p @ bank.T) * inv_t)
        total += infonce_weight * float(-np.mean(logp[np.arange(m), target_rows]))
    elif infonce_weight > 0 and m > 1:
        logits = (p @ targets.T) * inv_t
        if groups is not None:
            same = (groups[:, None] == groups[None, :]) & ~np.eye(m, dtype=bool)
            logits[same] = -np.inf
        if negatives is not None:
            neg_logits = np.einsum("md,mkd->mk", p, negatives) * inv_t
            if negative_mask is not None:
                neg_logits = np.where(negative_mask, neg_logits, -np.inf)
            logits = np.concatenate([logits, neg_logits], axis=1)
        logp, probs = _log_softmax_rows(logits)
        total += infonce_weight * float(-np.mean(logp[np.arange(m), np.arange(m)]))
        if negatives is not None:
            probs, probs_neg = probs[:, :m], probs[:, m:]

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        scale = float(g)
        dp = (2.0 / (m * d)) * diff - (cosine_weight / m) * targets
        if probs is not None and bank is not None:
            soft = probs.copy()
            soft[np.arange(m), target_rows] -= 1.0
            dp += (infonce_weight * inv_t / m) * (soft @ bank)
        elif probs is not None:
            soft = probs.copy()
            soft[np.arange(m), np.arange(m)] -= 1.0
            dp += (infonce_weight * inv_t / m) * (soft @ targets)
            if probs_neg is not None and negatives is not None:
                dp += (infonce_weight * inv_t / m) * np.einsum("mk,mkd->md", probs_neg, negatives)
        dp *= scale
        dy = (dp - p * np.einsum("ij,ij->i", p, dp)[:, None]) / norms
        grad = np.zeros_like(y_all)
        grad[positions] = dy
        return (grad.reshape(outputs.shape),)

    return make_result(np.array(total, dtype=np.float32), (outputs,), backward)


def loss_from_config(config: Any) -> dict[str, float]:
    """The loss weights of a :class:`VectorPredictorConfig` as keyword arguments."""
    return {"cosine_weight": config.cosine_weight, "infonce_weight": config.infonce_weight,
            "temperature": config.temperature}
