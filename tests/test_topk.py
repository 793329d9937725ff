"""Exact top-k search and target ranks against NumPy brute force: both kernel paths,
all metrics, ties, edge sizes, memory-mapped banks, thread-count determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

import seqlab
from seqlab.metrics import retrieval, target_rank, topk

METRICS = ("ip", "cosine", "l2")
PATHS = ("simd", "gemm")


def ref_scores(q: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """(Q, N) float64 ranking keys: higher is better (negative squared distance for l2)."""
    q64, b64 = q.astype(np.float64), b.astype(np.float64)
    if metric == "ip":
        return q64 @ b64.T
    if metric == "cosine":
        qn = q64 / np.maximum(np.linalg.norm(q64, axis=1, keepdims=True), 1e-8)
        bn = b64 / np.maximum(np.linalg.norm(b64, axis=1, keepdims=True), 1e-8)
        return qn @ bn.T
    # Expanded form: exact in float64 for the small-integer data used for exact checks.
    sq = (q64**2).sum(1)[:, None] + (b64**2).sum(1)[None, :] - 2.0 * (q64 @ b64.T)
    return -np.maximum(sq, 0.0)


def ref_topk(q: np.ndarray, b: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    s = ref_scores(q, b, metric)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]  # stable: lower index first on ties
    top = np.take_along_axis(s, order, 1)
    return (-top if metric == "l2" else top), order


def ref_rank(q: np.ndarray, b: np.ndarray, t: np.ndarray, metric: str) -> np.ndarray:
    s = ref_scores(q, b, metric)
    st = s[np.arange(len(t)), t][:, None]
    lower = np.arange(b.shape[0])[None, :] < t[:, None]
    return ((s > st) | ((s == st) & lower)).sum(1)


def int_data(rng: np.random.Generator, shape: tuple[int, ...], lo: int = -3, hi: int = 4):
    """Small integers as float32: every inner product and distance is exact."""
    return rng.integers(lo, hi, size=shape).astype(np.float32)


def unit_int_queries(rng: np.random.Generator, q: int, d: int) -> np.ndarray:
    """Queries with four +-1 entries: their normalised form (+-0.5) is exact."""
    out = np.zeros((q, d), np.float32)
    cols = np.argsort(rng.random((q, d)), axis=1)[:, : min(4, d)]
    signs = rng.choice(np.array([-1.0, 1.0], np.float32), size=cols.shape)
    np.put_along_axis(out, cols, signs, axis=1)
    return out


def check_valid_topk(scores, idx, q, b, k, metric, tol=1e-4):
    """Scores match the reference at the returned indices, are ordered, and form a top-k."""
    ref = ref_scores(q, b, metric)
    assert scores.shape == idx.shape == (q.shape[0], k)
    assert scores.dtype == np.float32 and idx.dtype == np.int64
    picked = np.take_along_axis(ref, idx, 1)
    expect = -picked if metric == "l2" else picked
    scale = np.abs(ref).max() + 1.0
    np.testing.assert_allclose(scores, expect, atol=tol * scale, rtol=1e-4)
    for row in idx:
        assert len(set(row.tolist())) == k
    diffs = np.diff(scores, axis=1)
    assert ((diffs >= 0) if metric == "l2" else (diffs <= 0)).all()
    kth = -np.sort(-ref, axis=1)[:, k - 1]
    assert (picked.min(1) >= kth - tol * scale).all()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("q,n,d,k", [(1, 500, 17, 5), (7, 3000, 64, 10), (40, 2500, 33, 7),
                                     (3, 300, 1, 4), (1, 50, 8, 50), (25, 40, 5, 1),
                                     (70, 1500, 20, 6)])  # more queries than one panel of the tile
def test_topk_matches_bruteforce_exact(rng, metric, path, q, n, d, k):
    b = int_data(rng, (n, d))
    qs = unit_int_queries(rng, q, d) if metric == "cosine" else int_data(rng, (q, d))
    s, i = topk(qs, b, k, metric, path=path)
    rs, ri = ref_topk(qs, b, k, metric)
    if metric == "cosine":
        # Integer rows can tie in exact arithmetic (1/sqrt(2) = 3/sqrt(18)) but not in float.
        check_valid_topk(s, i, qs, b, k, metric)
    else:
        np.testing.assert_array_equal(i, ri)
    np.testing.assert_allclose(s, rs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("path", PATHS)
def test_topk_random_gaussian(rng, metric, path):
    b = rng.standard_normal((4100, 48)).astype(np.float32)
    q = rng.standard_normal((30, 48)).astype(np.float32)
    s, i = topk(q, b, 10, metric, path=path)
    check_valid_topk(s, i, q, b, 10, metric)
    rs, ri = ref_topk(q, b, 10, metric)
    assert (i == ri).mean() > 0.99  # only float near-ties may swap


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("path", PATHS)
def test_ties_broken_by_lower_index(rng, metric, path):
    base = int_data(rng, (60, 12))
    if metric == "cosine":  # no exact ties between different rows, only between copies
        base = rng.standard_normal((60, 12)).astype(np.float32)
    b = np.concatenate([base, base, base[::-1]])  # every row appears 3 times
    q = unit_int_queries(rng, 25, 12) if metric == "cosine" else int_data(rng, (25, 12))
    s, i = topk(q, b, 12, metric, path=path)
    _, ri = ref_topk(q, b, 12, metric)
    np.testing.assert_array_equal(i, ri)
    same = s[:, 1:] == s[:, :-1]
    assert same.any()  # the data do produce ties
    assert (i[:, 1:][same] > i[:, :-1][same]).all()


def test_all_equal_scores_give_first_k_indices():
    b = np.ones((1000, 4), np.float32)
    for path in PATHS:
        for q in (1, 30):
            _, i = topk(np.ones((q, 4), np.float32), b, 9, "ip", path=path)
            np.testing.assert_array_equal(i, np.broadcast_to(np.arange(9), (q, 9)))


def test_single_query_vector_and_k_equals_n(rng):
    b = int_data(rng, (64, 6))
    q = int_data(rng, (6,))
    s, i = topk(q, b, 64, "ip")
    assert s.shape == i.shape == (64,)
    _, ri = ref_topk(q[None], b, 64, "ip")
    np.testing.assert_array_equal(i, ri[0])
    assert sorted(i.tolist()) == list(range(64))


@pytest.mark.parametrize("metric", METRICS)
def test_gemm_tiling_boundaries(rng, metric):
    # Work items are bank chunks of 512 rows (at this D) x groups of 6-query panels, and
    # the register tile is 6 queries x 64 (or 16) rows: 9000 rows span 18 chunks, the last
    # partial, and 1000 queries end in a panel of 4; a bank of 300 rows (one chunk, a
    # partial row panel) splits 2100 queries into several items.
    for q_count, n in ((1000, 9000), (2100, 300)):
        b = int_data(rng, (n, 8))
        if metric == "cosine":
            b = rng.standard_normal((n, 8)).astype(np.float32)
        q = unit_int_queries(rng, q_count, 8) if metric == "cosine" else int_data(rng, (q_count, 8))
        s, i = topk(q, b, 5, metric, path="gemm")
        if metric == "cosine":
            check_valid_topk(s, i, q, b, 5, metric)
        else:
            np.testing.assert_array_equal(i, ref_topk(q, b, 5, metric)[1])
        t = rng.integers(0, n, q_count)
        ranks = target_rank(q, t, b, metric, path="gemm")
        np.testing.assert_array_equal(ranks, ref_rank(q, b, t, metric))


def test_paths_agree_on_gaussian(rng):
    b = rng.standard_normal((5000, 96)).astype(np.float32)
    q = rng.standard_normal((8, 96)).astype(np.float32)
    for metric in METRICS:
        s1, i1 = topk(q, b, 10, metric, path="simd")
        s2, i2 = topk(q, b, 10, metric, path="gemm")
        assert (i1 == i2).mean() > 0.98
        np.testing.assert_allclose(s1, s2, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("path", PATHS)
def test_thread_count_gives_identical_results(rng, path):
    b = rng.standard_normal((20000, 40)).astype(np.float32)
    q = rng.standard_normal((24, 40)).astype(np.float32)
    before = seqlab.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            seqlab.set_num_threads(n)
            res = [topk(q, b, 10, m, path=path) for m in METRICS]
            res.append(target_rank(q, np.arange(24) * 7, b, "cosine", path=path))
            results.append(res)
        for a, c in zip(results[0][:3], results[1][:3], strict=True):
            np.testing.assert_array_equal(a[0], c[0])
            np.testing.assert_array_equal(a[1], c[1])
        np.testing.assert_array_equal(results[0][3], results[1][3])
    finally:
        seqlab.set_num_threads(before)


def test_memory_mapped_bank(rng, tmp_path, monkeypatch):
    b = int_data(rng, (3000, 20))
    q = int_data(rng, (5, 20))
    path = tmp_path / "bank.npy"
    np.save(path, b)
    mm = np.load(path, mmap_mode="r")
    assert isinstance(mm, np.memmap)
    _, ri = ref_topk(q, b, 10, "l2")
    s, i = topk(q, mm, 10, "l2")
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(topk(q, mm, 10, "l2", path="gemm")[1], ri)
    # A float64 memmap is converted in chunks of rows (force several chunks) and merged.
    np.save(tmp_path / "bank64.npy", b.astype(np.float64))
    mm64 = np.load(tmp_path / "bank64.npy", mmap_mode="r")
    monkeypatch.setattr(retrieval, "_CHUNK_BYTES", 20 * 4 * 700)
    for metric in METRICS:
        qs = unit_int_queries(rng, 5, 20) if metric == "cosine" else q
        s64, i64 = topk(qs, mm64, 10, metric)
        s32, i32 = topk(qs, b, 10, metric)
        np.testing.assert_array_equal(i64, i32)
        np.testing.assert_allclose(s64, s32, rtol=1e-6)
        t = np.array([0, 2999, 1500, 700, 701])
        np.testing.assert_array_equal(target_rank(qs, t, mm64, metric), ref_rank(qs, b, t, metric))


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("path", PATHS)
def test_target_rank_matches_bruteforce(rng, metric, path):
    base = int_data(rng, (700, 10))
    if metric == "cosine":
        base = rng.standard_normal((700, 10)).astype(np.float32)
    b = np.concatenate([base, base[:300]])  # duplicates: ranks depend on the tie rule
    q = unit_int_queries(rng, 30, 10) if metric == "cosine" else int_data(rng, (30, 10))
    t = rng.integers(0, b.shape[0], 30)
    t[:5] = [0, 999, 700, 1, 350]
    ranks = target_rank(q, t, b, metric, path=path)
    np.testing.assert_array_equal(ranks, ref_rank(q, b, t, metric))


def test_rank_consistent_with_topk(rng):
    b = rng.standard_normal((3000, 32)).astype(np.float32)
    q = rng.standard_normal((10, 32)).astype(np.float32)
    _, top = topk(q, b, 20, "cosine", path="simd")
    ranks = target_rank(np.repeat(q, 20, 0), top.reshape(-1), b, "cosine", path="simd")
    np.testing.assert_array_equal(ranks, np.tile(np.arange(20), 10))


def test_topk_errors(rng):
    b = rng.standard_normal((10, 4)).astype(np.float32)
    q = rng.standard_normal((3, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"k: must be in \[1, N=10\].*\(10, 4\).*got 11"):
        topk(q, b, 11)
    with pytest.raises(ValueError, match="k: must be in"):
        topk(q, b, 0)
    with pytest.raises(TypeError, match="k: expected an int"):
        topk(q, b, 2.5)
    with pytest.raises(ValueError, match=r"bank: is empty, shape \(0, 4\)"):
        topk(q, np.zeros((0, 4), np.float32), 1)
    with pytest.raises(ValueError,
                       match=r"queries and bank: dimensions differ.*\(3, 5\).*\(10, 4\)"):
        topk(rng.standard_normal((3, 5)), b, 1)
    with pytest.raises(ValueError, match=r"bank: expected shape \(N, D\), got \(2, 5, 4\)"):
        topk(q, np.zeros((2, 5, 4), np.float32), 1)
    with pytest.raises(ValueError, match=r"queries: expected shape \(Q, D\) or \(D,\)"):
        topk(np.zeros((1, 3, 4)), b, 1)
    with pytest.raises(ValueError, match="metric"):
        topk(q, b, 1, "manhattan")
    bad_q = q.copy()
    bad_q[1, 2] = np.nan
    with pytest.raises(ValueError, match="queries: row 1 .* NaN"):
        topk(bad_q, b, 1)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_bank_row_raises(rng, metric, path, value):
    b = rng.standard_normal((3000, 16)).astype(np.float32)
    b[1234, 5] = value
    q = rng.standard_normal((4, 16)).astype(np.float32)
    with pytest.raises(ValueError, match=r"bank: row 1234 of \(3000, 16\).*non-finite"):
        topk(q, b, 3, metric, path=path)
    with pytest.raises(ValueError, match=r"row 1234"):
        target_rank(q, np.array([0, 1, 2, 3]), b, metric, path=path)


@pytest.mark.parametrize("metric", METRICS)
def test_nonfinite_gemm_reports_lowest_row_for_any_thread_count(rng, metric):
    # Bad rows in different bank chunks: whichever thread meets one first, the lowest is named.
    b = rng.standard_normal((6000, 16)).astype(np.float32)
    b[5000, 3] = np.nan
    b[1234, 5] = np.inf
    q = rng.standard_normal((40, 16)).astype(np.float32)
    before = seqlab.get_num_threads()
    try:
        for n in (1, 2):
            seqlab.set_num_threads(n)
            with pytest.raises(ValueError, match=r"bank: row 1234 of \(6000, 16\)"):
                topk(q, b, 3, metric, path="gemm")
            with pytest.raises(ValueError, match=r"row 1234 "):
                target_rank(q, np.arange(40), b, metric, path="gemm")
    finally:
        seqlab.set_num_threads(before)


def test_target_rank_errors(rng):
    b = rng.standard_normal((10, 4)).astype(np.float32)
    q = rng.standard_normal((3, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="targets: index 10 at position 2 is outside a bank of 10"):
        target_rank(q, np.array([0, 1, 10]), b)
    with pytest.raises(ValueError, match=r"targets: expected shape \(3,\)"):
        target_rank(q, np.array([0, 1]), b)
    with pytest.raises(TypeError, match="targets: expected integer"):
        target_rank(q, np.array([0.0, 1.0, 2.0]), b)
