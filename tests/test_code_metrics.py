"""Code metrics against brute force and hand-computed values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from seqlab import metrics


def _levenshtein_brute(a, b) -> int:
    d = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, d[0] = d[:], i
        for j in range(1, len(b) + 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1]


def test_levenshtein_matches_brute_force(rng):
    for _ in range(200):
        a = "".join(rng.choice(list("abc"), rng.integers(0, 12)))
        b = "".join(rng.choice(list("abc"), rng.integers(0, 12)))
        assert metrics.levenshtein(a, b) == _levenshtein_brute(a, b)
        assert metrics.levenshtein(list(a), list(b)) == _levenshtein_brute(a, b)
    assert metrics.levenshtein("kitten", "sitting") == 3
    assert metrics.levenshtein("naïve→", "naive") == 2


def test_scores_by_hand():
    assert metrics.exact_match(["a", "b", "c"], ["a", "x", "c"]) == pytest.approx(2 / 3)
    # 2 of 3 positions, then 1 of max(1, 2)
    assert metrics.token_accuracy([["a", "b", "c"], ["x"]], [["a", "z", "c"], ["x", "y"]]) == pytest.approx(
        (2 / 3 + 1 / 2) / 2
    )
    assert metrics.edit_similarity(["kitten", ""], ["sitting", ""]) == pytest.approx((1 - 3 / 7 + 1) / 2)
    assert metrics.share([True, False, True, True]) == 0.75
    sims = [metrics.edit_similarity([a], [b]) for a, b in itertools.product(["ab", "ba", "abc"], repeat=2)]
    assert np.all((np.array(sims) >= 0) & (np.array(sims) <= 1))


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="predictions and references: lengths differ, 2 and 1"):
        metrics.exact_match(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="predictions: no examples"):
        metrics.edit_similarity([], [])
    with pytest.raises(ValueError, match="flags: no examples"):
        metrics.share([])


@pytest.mark.parametrize(("wins", "losses"), [(0, 0), (3, 0), (7, 2), (2, 7), (5, 5), (40, 21), (300, 250)])
def test_sign_test_is_the_two_sided_binomial_tail(wins, losses):
    from math import comb

    n, k = wins + losses, min(wins, losses)
    expected = 1.0 if n == 0 else min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n)
    assert metrics.sign_test(wins, losses) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="counts >= 0"):
        metrics.sign_test(-1, 2)


def test_paired_exact_match_counts_discordant_pairs():
    refs = ["a", "b", "c", "d", "e", "f"]
    model = ["a", "b", "c", "x", "e", "y"]
    baseline = ["a", "z", "z", "d", "z", "y"]
    got = metrics.paired_exact_match(model, baseline, refs)
    assert got["a_only"] == 3 and got["b_only"] == 1 and got["both"] == 1
    assert got["p_value"] == pytest.approx(metrics.sign_test(3, 1)) and got["p_value"] == pytest.approx(0.625)
    with pytest.raises(ValueError, match="predictions_b and references"):
        metrics.paired_exact_match(model, baseline[:2], refs)
