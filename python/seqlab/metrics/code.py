"""Metrics of generated code against references: exact match, token accuracy, edit
similarity, and shares of flags (outputs that parse, outputs returned unchanged).

Every function takes equal-length lists (one entry per example) and returns a mean over the
examples; ``ValueError`` names the argument when the lengths differ or are zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import exp, lgamma, log

import numpy as np

FEW_SAMPLES = 200


def _check_lists(a: Sequence, b: Sequence, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b}: lengths differ, {len(a)} and {len(b)}")
    if len(a) == 0:
        raise ValueError(f"{name_a}: no examples")


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference, character for character."""
    _check_lists(predictions, references, "predictions", "references")
    return float(np.mean([p == r for p, r in zip(predictions, references)]))


def token_accuracy(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    """Mean over examples of the share of positions ``t < max(len(pred), len(ref))`` where
    the predicted token equals the reference token (a missing or extra token is wrong);
    1.0 for two empty sequences."""
    _check_lists(predictions, references, "predictions", "references")
    scores = []
    for p, r in zip(predictions, references):
        n = max(len(p), len(r))
        scores.append(1.0 if n == 0 else sum(a == b for a, b in zip(p, r)) / n)
    return float(np.mean(scores))


def levenshtein(a: Sequence, b: Sequence) -> int:
    """Edit distance (insertions, deletions, substitutions of one element) of two
    sequences (strings: characters), one NumPy row per element of ``a``."""
    if len(a) < len(b):
        a, b = b, a
    if len(b) == 0:
        return len(a)
    if isinstance(a, str) and isinstance(b, str):
        bb = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
        aa = np.frombuffer(a.encode("utf-32-le"), dtype=np.uint32)
    else:
        vocab: dict = {}
        aa = np.array([vocab.setdefault(x, len(vocab)) for x in a], dtype=np.int64)
        bb = np.array([vocab.setdefault(x, len(vocab)) for x in b], dtype=np.int64)
    cols = np.arange(len(bb) + 1, dtype=np.int64)
    row = cols.copy()
    for i, x in enumerate(aa, 1):
        # substitution / deletion from the row above, then insertions along the row:
        # row[j] = min_k<=j (tmp[k] + j - k) = j + cummin(tmp - k)
        tmp = np.empty_like(row)
        tmp[0] = i
        tmp[1:] = np.minimum(row[:-1] + (bb != x), row[1:] + 1)
        row = np.minimum.accumulate(tmp - cols) + cols
    return int(row[-1])


def edit_similarity(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean of ``1 - levenshtein(pred, ref) / max(len(pred), len(ref))`` over characters
    (CodeXGLUE's line-completion edit similarity, on a 0-1 scale); 1.0 for two empty
    strings."""
    _check_lists(predictions, references, "predictions", "references")
    return float(
        np.mean(
            [
                1.0 if not (p or r) else 1.0 - levenshtein(p, r) / max(len(p), len(r))
                for p, r in zip(predictions, references)
            ]
        )
    )


def share(flags: Sequence[bool]) -> float:
    """Share of true flags (e.g. outputs that parse, outputs returned unchanged)."""
    if len(flags) == 0:
        raise ValueError("flags: no examples")
    return float(np.mean(np.asarray(flags, dtype=bool)))


def paired_exact_match(
    predictions_a: Sequence[str], predictions_b: Sequence[str], references: Sequence[str]
) -> dict[str, float | int]:
    """Two predictors' exact matches on the same examples, compared pair by pair (the exact
    McNemar test, a sign test on the discordant examples).

    Returns ``a_only`` (examples only ``a`` gets exactly right), ``b_only``, ``both`` and
    ``p_value``: the two-sided binomial probability, with equal chances, of a split of the
    ``a_only + b_only`` discordant examples at least as uneven as the one seen (1.0 when
    there is none). A small ``p_value`` (say below 0.05) says the difference in exact match
    is more than the luck of which examples were held out.
    """
    _check_lists(predictions_a, references, "predictions_a", "references")
    _check_lists(predictions_b, references, "predictions_b", "references")
    hit_a = np.array([p == r for p, r in zip(predictions_a, references)])
    hit_b = np.array([p == r for p, r in zip(predictions_b, references)])
    a_only, b_only = int((hit_a & ~hit_b).sum()), int((hit_b & ~hit_a).sum())
    return {"a_only": a_only, "b_only": b_only, "both": int((hit_a & hit_b).sum()),
            "p_value": sign_test(a_only, b_only)}


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: the probability, under Binomial(wins + losses, 1/2), of a
    split at least as uneven as ``wins`` against ``losses`` (1.0 for no trials)."""
    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses: expected counts >= 0, got {wins} and {losses}")
    n, k = wins + losses, min(wins, losses)
    if n == 0:
        return 1.0
    # log-space binomial terms: exact for any n without overflowing
    logs = [lgamma(n + 1) - lgamma(i + 1) - lgamma(n - i + 1) - n * log(2.0) for i in range(k + 1)]
    tail = sum(exp(x) for x in logs)
    return float(min(1.0, 2.0 * tail))
