"""The weights of the model's fixed mix (the previous vector and the context mean added
to the last), chosen on the validation chains before training.

An untrained :class:`~seqlab.models.vectors.NextVectorModel` predicts
``normalize(last + a * previous + b * mean)``; this module scores every ``(a, b)`` of a
small grid exactly as the evaluation scores a model (every validation window ranked
against every validation vector) and keeps the best. ``(0, 0)``, the copy-last baseline,
is on the grid, so the mix never starts training below copy-last on validation.
"""

from __future__ import annotations

import numpy as np

from ...data.vector_chains import VectorChains
from ...data.vector_windows import window_spans
from .baselines import unit_rows, window_mean
from .evaluate import retrieval_scores

#: the weights tried for the previous vector and for the context mean
PREVIOUS_WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
MEAN_WEIGHTS = (-0.2, -0.1, 0.0, 0.1, 0.2)


def mix_predictions(vectors: np.ndarray, starts: np.ndarray, targets: np.ndarray,
                    weights: tuple[float, float]) -> np.ndarray:
    """``(Q, D)``: ``normalize(last + a * previous + b * window mean)`` of each window
    (rows ``starts[q] .. targets[q] - 1``; the previous vector is zero for a window of one)."""
    a, b = weights
    last = vectors[targets - 1].astype(np.float64)
    has_prev = (targets - 2 >= starts)[:, None]
    prev = np.where(has_prev, vectors[np.maximum(targets - 2, 0)], 0.0)
    return unit_rows(last + a * prev + b * window_mean(vectors, starts, targets)).astype(np.float32)


def choose_mix(chains: VectorChains, context: int) -> tuple[tuple[float, float], dict[str, float]]:
    """The ``(previous, mean)`` weights of the grid with the highest Hit@5 + MRR on
    ``chains`` (the validation split; ties keep the smaller weights), and its scores
    (``hit@5``, ``mrr``, and ``copy_last_hit@5``, ``copy_last_mrr`` of ``(0, 0)``)."""
    starts, targets = window_spans(chains, context)
    if len(targets) == 0:
        raise ValueError(f"{chains.source}: no window to choose the mix on")
    best: tuple[float, tuple[float, float], dict[str, float]] | None = None
    scores: dict[tuple[float, float], dict[str, float]] = {}
    for a in PREVIOUS_WEIGHTS:
        for b in sorted(MEAN_WEIGHTS, key=abs):
            s = retrieval_scores(mix_predictions(chains.vectors, starts, targets, (a, b)), targets,
                                 chains.vectors, ks=(5,))
            scores[(a, b)] = s
            value = s["hit@5"] + s["mrr"]
            if best is None or value > best[0]:
                best = (value, (a, b), s)
    assert best is not None
    base = scores[(0.0, 0.0)]
    return best[1], {"hit@5": best[2]["hit@5"], "mrr": best[2]["mrr"],
                     "copy_last_hit@5": base["hit@5"], "copy_last_mrr": base["mrr"]}
