"""Retrieval scores of next-vector predictions against a bank of every vector of a split."""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import metrics

CONTRASTIVE_BATCH = 256


def retrieval_scores(
    predictions: np.ndarray, target_rows: np.ndarray, bank: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)
) -> dict[str, float]:
    """Hit@K, MRR and contrastive accuracy of ``(Q, D)`` predictions whose true next
    vectors are ``bank[target_rows]``.

    Hit@K and MRR rank each target among the whole bank by cosine; contrastive accuracy
    (share of other targets farther, by L2, than the true one) is computed over
    consecutive batches of :data:`CONTRASTIVE_BATCH` windows and averaged, as a training
    batch would see it.
    """
    if len(predictions) == 0:
        raise ValueError("no windows to evaluate")
    ks = tuple(k for k in ks if k <= len(bank))
    ranks = metrics.target_rank(predictions, target_rows, bank, "cosine")
    out: dict[str, float] = {f"hit@{k}": float(np.mean(ranks < k)) for k in ks}
    out["mrr"] = float(np.mean(1.0 / (ranks + 1.0)))
    accs, weights = [], []
    for s in range(0, len(predictions), CONTRASTIVE_BATCH):
        p, t = predictions[s : s + CONTRASTIVE_BATCH], bank[target_rows[s : s + CONTRASTIVE_BATCH]]
        if len(p) >= 2:
            accs.append(metrics.contrastive_accuracy(p, t))
            weights.append(len(p))
    out["contrastive_accuracy"] = float(np.average(accs, weights=weights)) if accs else float("nan")
    out["windows"] = float(len(predictions))
    out["bank"] = float(len(bank))
    return out


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """The evaluation as an aligned text table (one row per predictor)."""
    keys = [k for k in next(iter(results.values())) if k not in ("windows", "bank")]
    lines = [f"{'':14s}" + "".join(f"{k:>22s}" if k == "contrastive_accuracy" else f"{k:>9s}" for k in keys)]
    for name, row in results.items():
        lines.append(f"{name:14s}" + "".join(
            f"{row[k]:22.4f}" if k == "contrastive_accuracy" else f"{row[k]:9.4f}" for k in keys))
    return "\n".join(lines)
