"""Evaluation of a poetry autoencoder on held-out chunks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ... import metrics
from ...autograd import no_grad, tensor
from ...data.batching import pad_sequences
from .dataset import Uncentring
from .model import SequenceAutoencoder


def run_batches(
    model: SequenceAutoencoder,
    embedding: np.ndarray,
    chunks: Sequence[np.ndarray],
    batch_size: int = 64,
    use_attention: bool = True,
    teacher_forcing: float | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Reconstructs token-id chunks; returns (predictions (T_i, E) and codes per chunk in input
    order, and the chunk lengths). Runs in eval mode: free-running unless ``teacher_forcing``."""
    order = np.argsort([len(c) for c in chunks], kind="stable")
    preds: list[np.ndarray] = [np.empty(0)] * len(chunks)
    codes: list[np.ndarray] = [np.empty(0)] * len(chunks)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                ids, lengths = pad_sequences([chunks[i] for i in idx])
                x = tensor(embedding[ids])
                tf = None
                if teacher_forcing is not None:
                    tf = model.decoder.sample_teacher_forcing(len(idx), ids.shape[1], teacher_forcing)
                out, code = model(x, lengths, teacher_forcing=tf, use_attention=use_attention)
                for row, i in enumerate(idx):
                    preds[i] = out.data[row, : lengths[row]].copy()
                    codes[i] = code.data[row].copy()
    finally:
        model.train(was_training)
    return preds, codes, np.array([len(c) for c in chunks], dtype=np.int64)


def score_reconstructions(
    preds: Sequence[np.ndarray],
    chunks: Sequence[np.ndarray],
    embedding: np.ndarray,
    uncentring: Uncentring | None = None,
    centred: bool = True,
) -> dict[str, Any]:
    """How well reconstructed vectors match chunks of token ids.

    Args:
        preds: the reconstruction of each chunk, ``(T_i, E)``.
        chunks: the true token ids of each chunk, ``(T_i,)``.
        embedding: ``(V, E)`` word vectors (row 0 padding, never a candidate word).
        uncentring: maps centred vectors back to the original ones, for
            ``token_cosine_uncentred``.
        centred: whether ``embedding`` was centred; when it was not, the uncentred
            token cosine is the token cosine itself.

    Returns:
        ``chunks`` and ``tokens`` (the counts scored); ``token_cosine`` (mean over tokens
        of cos(prediction, true vector)); ``token_cosine_uncentred`` (the same on the
        original, uncentred vectors, the measure of the original project, in which the
        mean vector alone scores high; None when the way back is unknown);
        ``sequence_cosine`` (mean over chunks of the cosine between the chunk's mean
        prediction and mean true vector); ``mse`` and ``rmse`` per vector component;
        ``word_top1``/``word_top5``: the share of tokens whose prediction's nearest
        vocabulary words by cosine (1 or 5) include the true word.
    """
    lengths = np.array([len(c) for c in chunks], dtype=np.int64)
    pred_tokens = np.ascontiguousarray(np.concatenate(preds), dtype=np.float32)
    true_ids = np.concatenate(chunks)
    true_tokens = embedding[true_ids]
    padded_pred, _ = pad_sequences(preds)
    padded_true, _ = pad_sequences([embedding[c] for c in chunks])
    mask = np.arange(padded_pred.shape[1])[None, :] < lengths[:, None]
    k = min(5, len(embedding) - 1)
    _, nearest = metrics.topk(pred_tokens, embedding[1:], k=k, metric="cosine")
    nearest = nearest + 1  # row 0 of the embedding is padding, never a candidate
    token_cosine = metrics.token_cosine(pred_tokens, true_tokens)
    if not centred:
        uncentred: float | None = token_cosine
    elif uncentring is None:
        uncentred = None
    else:
        uncentred = metrics.token_cosine(
            uncentring.predictions(pred_tokens), uncentring.words(embedding, true_ids)
        )
    return {
        "chunks": len(chunks),
        "tokens": int(len(true_ids)),
        "token_cosine": token_cosine,
        "token_cosine_uncentred": uncentred,
        "sequence_cosine": metrics.sequence_cosine(padded_pred, padded_true, mask),
        "mse": metrics.mse(pred_tokens, true_tokens),
        "rmse": metrics.rmse(pred_tokens, true_tokens),
        "word_top1": float(np.mean(nearest[:, 0] == true_ids)),
        "word_top5": float(np.mean((nearest == true_ids[:, None]).any(axis=1))),
    }


def evaluate_chunks(
    model: SequenceAutoencoder,
    embedding: np.ndarray,
    chunks: Sequence[np.ndarray],
    batch_size: int = 64,
    use_attention: bool = True,
    uncentring: Uncentring | None = None,
) -> dict[str, Any]:
    """Reconstruction quality on chunks of token ids (free-running decoding).

    Returns the scores of :func:`score_reconstructions` (token and sequence cosine, the
    uncentred token cosine, MSE, RMSE, word recovery top-1/5) and the bottleneck's
    utilisation and PCA spectrum over the chunks' codes.
    """
    if len(chunks) == 0:
        raise ValueError("evaluate: no chunks to evaluate")
    preds, codes, _ = run_batches(model, embedding, chunks, batch_size, use_attention)
    scores = score_reconstructions(
        preds, chunks, embedding, uncentring, centred=model.config.center_embeddings
    )
    code_matrix = np.stack(codes)
    util = metrics.bottleneck_utilization(code_matrix)
    spectrum = metrics.pca_explained_variance(code_matrix) if len(code_matrix) > 1 else np.ones(1)
    return {
        **scores,
        "bottleneck_active_dims": int(util["active_dims"]),
        "bottleneck_dims": int(util["total_dims"]),
        "bottleneck_participation_ratio": float(util["participation_ratio"]),
        "pca_explained_variance": [float(v) for v in spectrum],
    }
