"""The poetry autoencoder's training loss: cosine + MSE on the vectors, plus an optional
softmax over the batch's words."""

from __future__ import annotations

import numpy as np

from ... import functional as F
from ...autograd import Tensor, tensor
from .config import AutoencoderConfig


def loss_weights(config: AutoencoderConfig) -> tuple[float, float]:
    """(cosine weight, MSE weight) of the configured loss."""
    return {"cosine": (1.0, 0.0), "mse": (0.0, 1.0)}.get(
        config.loss, (config.cosine_weight, config.mse_weight)
    )


def batch_vocabulary_loss(pred: Tensor, ids: np.ndarray, embedding: np.ndarray, temperature: float) -> Tensor:
    """Softmax cross-entropy of each predicted vector against the words of its batch.

    Shapes: pred (B, T, E); ids (B, T) int64 token ids, 0 at padding; embedding (V, E),
    rows of unit length. The candidates are the distinct words of the batch (a sampled
    softmax with the batch as negatives); the logit of word w at (b, t) is
    ``pred[b, t] . embedding[w] / temperature``, whose arg max is the nearest word by
    cosine, the word recovery the evaluation measures. The mean over real tokens; padding
    is ignored. One GEMM (the fused linear op) and the fused cross-entropy kernel.
    """
    words = np.unique(ids[ids > 0])
    return _candidate_softmax(pred, np.where(ids > 0, np.searchsorted(words, ids), -100),
                              embedding[words], temperature)


def vocabulary_loss(pred: Tensor, ids: np.ndarray, embedding: np.ndarray, temperature: float) -> Tensor:
    """Softmax cross-entropy of each predicted vector against every vocabulary word.

    Shapes: pred (B, T, E); ids (B, T) int64 token ids, 0 at padding; embedding (V, E),
    rows of unit length, row 0 padding (never a candidate). The logit of word w at (b, t)
    is ``pred[b, t] . embedding[w] / temperature`` for w in 1..V-1: the candidates are
    the words the evaluation's nearest-word search ranks, so every word that could be
    nearer than the true one is pushed away, not only the words of the batch. The mean
    over real tokens; padding is ignored. One (B*T, E) x (E, V) GEMM and the fused
    cross-entropy kernel.
    """
    return _candidate_softmax(pred, np.where(ids > 0, ids - 1, -100), embedding[1:], temperature)


def _candidate_softmax(
    pred: Tensor, targets: np.ndarray, candidates: np.ndarray, temperature: float
) -> Tensor:
    """Cross-entropy of logits ``pred . candidates.T / temperature`` (B, T, C) against the
    index (B, T) of each true candidate, -100 at padding."""
    weight = tensor(np.ascontiguousarray(candidates / np.float32(temperature)))
    return F.cross_entropy(F.linear(pred, weight), targets.astype(np.int64), ignore_index=-100)


def reconstruction_loss(
    pred: Tensor, x: Tensor, ids: np.ndarray, lengths: np.ndarray, embedding: np.ndarray,
    config: AutoencoderConfig,
) -> Tensor:
    """The configured loss of predictions ``pred`` (B, T, E) of inputs ``x`` (B, T, E) with
    token ids ``ids`` (B, T) and ``lengths`` (B,): the masked cosine + MSE hybrid, plus
    ``config.vocab_loss_weight`` x :func:`batch_vocabulary_loss` (``config.vocab_candidates``
    ``"batch"``) or :func:`vocabulary_loss` (``"all"``) when that weight is > 0."""
    cos_w, mse_w = loss_weights(config)
    loss = F.cosine_mse_loss(
        pred, x, lengths, cosine_weight=cos_w, mse_weight=mse_w, temperature=config.temperature
    )
    if config.vocab_loss_weight > 0:
        word_loss = vocabulary_loss if config.vocab_candidates == "all" else batch_vocabulary_loss
        vocab = word_loss(pred, ids, embedding, config.vocab_temperature)
        loss = loss + vocab * config.vocab_loss_weight
    return loss
