"""Hard negatives: bank vectors close to a target, but not too close (likely paraphrases)."""

from __future__ import annotations

import numpy as np

from ... import metrics

_QUERY_BLOCK = 4096


def mine_hard_negatives(
    bank: np.ndarray, k: int, low: float = 0.75, high: float = 0.9, candidates: int = 64
) -> np.ndarray:
    """For each bank row, up to ``k`` other rows whose cosine to it lies in ``[low, high]``.

    Searches the ``candidates`` nearest rows of each and keeps the best-scoring ones in
    range. Returns ``(N, k)`` int64 row indices, -1 where fewer were found.
    """
    n = len(bank)
    out = np.full((n, k), -1, dtype=np.int64)
    if k == 0 or n < 2:
        return out
    width = min(candidates + 1, n)
    for s in range(0, n, _QUERY_BLOCK):
        scores, idx = metrics.topk(bank[s : s + _QUERY_BLOCK], bank, width, metric="cosine")
        rows = np.arange(s, s + len(idx))[:, None]
        ok = (scores >= low) & (scores <= high) & (idx != rows)
        for r in range(len(idx)):
            found = idx[r][ok[r]][:k]
            out[s + r, : len(found)] = found
    return out


def negatives_for(targets: np.ndarray, mined: np.ndarray, bank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(M, K, D)`` negative vectors and ``(M, K)`` mask of the mined rows of ``targets``."""
    rows = mined[targets]
    mask = rows >= 0
    return bank[np.where(mask, rows, 0)], mask
