"""seqlab.metrics against NumPy brute-force references: retrieval (Hit@K, MRR, recall@K,
contrastive accuracy), reconstruction cosines, regression errors, latent usage; and the
error cases."""

from __future__ import annotations

import numpy as np
import pytest

import seqlab
from seqlab import metrics


def cos_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-8)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-8)
    return an @ bn.T


def ref_ranks(p: np.ndarray, bank: np.ndarray, t: np.ndarray) -> np.ndarray:
    s = cos_matrix(p, bank)
    st = s[np.arange(len(t)), t][:, None]
    lower = np.arange(bank.shape[0])[None, :] < t[:, None]
    return ((s > st) | ((s == st) & lower)).sum(1)


@pytest.fixture
def retrieval_data(rng):
    bank = rng.standard_normal((500, 24)).astype(np.float32)
    t = rng.integers(0, 500, 64)
    noise = rng.uniform(0.2, 3.0, (64, 1)).astype(np.float32)  # a spread of difficulties
    p = bank[t] + noise * rng.standard_normal((64, 24)).astype(np.float32)
    return p, t, bank


def test_hit_at_k_and_mrr_against_bruteforce(retrieval_data):
    p, t, bank = retrieval_data
    ranks = ref_ranks(p, bank, t)
    assert 0 < (ranks == 0).mean() < 1 and (ranks >= 10).any()  # non-trivial data
    hits = metrics.hit_at_k(p, t, bank, ks=(1, 5, 10, 500))
    assert list(hits) == ["hit@1", "hit@5", "hit@10", "hit@500"]
    for k in (1, 5, 10):
        assert hits[f"hit@{k}"] == pytest.approx((ranks < k).mean(), abs=1e-12)
    assert hits["hit@500"] == 1.0
    assert metrics.mrr(p, t, bank) == pytest.approx(np.mean(1.0 / (ranks + 1)), rel=1e-12)
    np.testing.assert_array_equal(metrics.target_rank(p, t, bank), ranks)


def test_hit_at_k_many_queries_uses_gemm_path_consistently(rng):
    bank = rng.standard_normal((2000, 16)).astype(np.float32)
    t = rng.integers(0, 2000, 300)
    p = bank[t] + 1.5 * rng.standard_normal((300, 16)).astype(np.float32)
    ranks = ref_ranks(p, bank, t)
    hits = metrics.hit_at_k(p, t, bank)
    for k in (1, 5, 10):
        assert hits[f"hit@{k}"] == pytest.approx((ranks < k).mean(), abs=1e-12)
    simd = metrics.target_rank(p, t, bank, path="simd")
    gemm = metrics.target_rank(p, t, bank, path="gemm")
    np.testing.assert_array_equal(simd, gemm)


def test_hit_at_k_in_batch_and_ties(rng):
    tv = rng.standard_normal((40, 8)).astype(np.float32)
    tv[20] = tv[3]  # a duplicate target: prediction 20 ties with row 3 (lower index wins)
    p = tv + 0.3 * rng.standard_normal((40, 8)).astype(np.float32)
    p[20] = tv[20]
    ranks = ref_ranks(p, tv, np.arange(40))
    assert ranks[20] >= 1
    res = metrics.hit_at_k(p, tv, ks=(1, 5))
    assert res["hit@1"] == pytest.approx((ranks < 1).mean())
    assert res["hit@5"] == pytest.approx((ranks < 5).mean())
    assert metrics.mrr(p, tv) == pytest.approx(np.mean(1.0 / (ranks + 1)))


def test_hit_at_k_accepts_tensors(retrieval_data):
    p, t, bank = retrieval_data
    a = metrics.hit_at_k(seqlab.tensor(p), t, seqlab.tensor(bank))
    assert a == metrics.hit_at_k(p, t, bank)


def test_recall_at_k_multiple_relevant(rng):
    bank = rng.standard_normal((300, 12)).astype(np.float32)
    p = rng.standard_normal((20, 12)).astype(np.float32)
    rel = rng.integers(0, 300, (20, 3))
    rel[::2, 2] = -1  # padding: some queries have 2 relevant items
    s = cos_matrix(p, bank)
    order = np.lexsort((np.broadcast_to(np.arange(300), s.shape), -s), axis=-1)
    _, top = metrics.topk(p, bank, 50)
    np.testing.assert_array_equal(top, order[:, :50])
    # make some relevant items reachable
    rel[:, 0] = order[:, 2]
    rel[1::3, 1] = order[1::3, 7]
    got = metrics.recall_at_k(p, rel, bank, ks=(1, 3, 10))
    for k in (1, 3, 10):
        vals = []
        for i in range(20):
            r = {int(x) for x in rel[i] if x >= 0}
            vals.append(len(r & set(order[i, :k].tolist())) / len(r))
        assert got[f"recall@{k}"] == pytest.approx(np.mean(vals), abs=1e-12)
    assert got["recall@1"] < got["recall@3"] <= got["recall@10"]
    single = metrics.recall_at_k(p, rel[:, 0], bank, ks=(1, 3, 5))
    assert single == {f"recall@{k}": v for k, v in
                      zip((1, 3, 5), metrics.hit_at_k(p, rel[:, 0], bank, (1, 3, 5)).values(),
                          strict=True)}


def test_contrastive_accuracy_against_bruteforce(rng):
    t = rng.standard_normal((30, 10)).astype(np.float32)
    p = t + rng.uniform(0.1, 2.0, (30, 1)).astype(np.float32) * rng.standard_normal((30, 10))
    p = p.astype(np.float32)
    d = ((p[:, None, :].astype(np.float64) - t[None].astype(np.float64)) ** 2).sum(-1)
    far = (d > np.diag(d)[:, None]).sum(1) / 29.0
    got = metrics.contrastive_accuracy(p, t)
    assert got == pytest.approx(far.mean(), abs=1e-12)
    assert 0.5 < got < 1.0
    c = cos_matrix(p, t)
    assert metrics.contrastive_accuracy(p, t, "cosine") == pytest.approx(
        ((c < np.diag(c)[:, None]).sum(1) / 29.0).mean(), abs=1e-12)
    assert metrics.contrastive_accuracy(t, t) == 1.0


def test_pairwise_cosine(rng):
    a = rng.standard_normal((7, 5)).astype(np.float32)
    b = rng.standard_normal((9, 5)).astype(np.float32)
    np.testing.assert_allclose(metrics.pairwise_cosine(a, b), cos_matrix(a, b), atol=1e-6)
    np.testing.assert_allclose(np.diag(metrics.pairwise_cosine(a)), 1.0, atol=1e-6)


def test_token_and_sequence_cosine(rng):
    pred = rng.standard_normal((4, 6, 5)).astype(np.float32)
    target = pred + rng.standard_normal((4, 6, 5)).astype(np.float32)
    mask = rng.random((4, 6)) > 0.3
    mask[:, 0] = True
    pred[~mask] = 100.0  # padding must not count
    p64, t64 = pred.astype(np.float64), target.astype(np.float64)
    cos = (p64 * t64).sum(-1) / (np.linalg.norm(p64, axis=-1) * np.linalg.norm(t64, axis=-1))
    assert metrics.token_cosine(pred, target, mask) == pytest.approx(cos[mask].mean(), abs=1e-6)
    assert metrics.token_cosine(pred, target) == pytest.approx(cos.mean(), abs=1e-6)
    flat = metrics.token_cosine(pred.reshape(-1, 5), target.reshape(-1, 5), mask.reshape(-1))
    assert flat == pytest.approx(cos[mask].mean(), abs=1e-6)
    w = mask[:, :, None]
    pm = (p64 * w).sum(1) / w.sum(1)
    tm = (t64 * w).sum(1) / w.sum(1)
    seq = (pm * tm).sum(1) / (np.linalg.norm(pm, axis=1) * np.linalg.norm(tm, axis=1))
    assert metrics.sequence_cosine(pred, target, mask) == pytest.approx(seq.mean(), abs=1e-6)
    assert metrics.token_cosine(target, target) == pytest.approx(1.0, abs=1e-6)
    assert metrics.token_cosine(np.zeros((2, 3)), np.ones((2, 3))) == 0.0


def test_regression_metrics(rng):
    pred = rng.standard_normal((50, 3))
    target = pred + 0.5 * rng.standard_normal((50, 3))
    err = pred - target
    assert metrics.mse(pred, target) == pytest.approx((err**2).mean(), rel=1e-12)
    assert metrics.rmse(pred, target) == pytest.approx(np.sqrt((err**2).mean()), rel=1e-12)
    assert metrics.mae(pred, target) == pytest.approx(np.abs(err).mean(), rel=1e-12)
    r2 = np.mean(1 - (err**2).sum(0) / ((target - target.mean(0)) ** 2).sum(0))
    assert metrics.r2(pred, target) == pytest.approx(r2, rel=1e-12)
    assert metrics.r2(target[:, 0], target[:, 0]) == 1.0
    mean_pred = np.full(50, target[:, 0].mean())
    assert metrics.r2(mean_pred, target[:, 0]) == pytest.approx(0.0, abs=1e-12)
    const = np.ones(10)
    assert metrics.r2(const, const) == 1.0 and metrics.r2(const * 2, const) == 0.0
    mask = rng.random(50) > 0.5
    assert metrics.mse(pred, target, mask) == pytest.approx((err[mask] ** 2).mean(), rel=1e-12)
    p32 = pred.astype(np.float32)
    assert metrics.mae(seqlab.tensor(p32), target) == pytest.approx(
        np.abs(p32.astype(np.float64) - target).mean(), rel=1e-12)


def test_bottleneck_utilization_and_pca(rng):
    scales = np.array([3.0, 1.0, 0.5, 0.05, 0.001, 0.0])
    z = rng.standard_normal((2000, 6)) * scales
    res = metrics.bottleneck_utilization(z)
    var = z.var(0, ddof=1)
    np.testing.assert_allclose(res["variances"], var, rtol=1e-12)
    assert res["active_dims"] == int((var > 0.01).sum()) == 3
    assert res["total_dims"] == 6
    lam = np.linalg.eigvalsh(np.cov(z, rowvar=False))
    assert res["participation_ratio"] == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-9)
    iso = metrics.bottleneck_utilization(rng.standard_normal((4000, 8)))
    assert 7.5 < iso["participation_ratio"] <= 8.0
    c = z - z.mean(0)
    sv = np.linalg.svd(c, compute_uv=False) ** 2
    ref = sv / sv.sum()
    np.testing.assert_allclose(metrics.pca_explained_variance(z), ref, atol=1e-12)
    np.testing.assert_allclose(metrics.pca_explained_variance(z, n=2), ref[:2], atol=1e-12)
    assert metrics.pca_explained_variance(z).sum() == pytest.approx(1.0)


def test_metric_errors(rng):
    p = rng.standard_normal((5, 4)).astype(np.float32)
    bank = rng.standard_normal((8, 4)).astype(np.float32)
    t = np.array([0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"ks: must be in \[1, N=8\].*got 10"):
        metrics.hit_at_k(p, t, bank)
    with pytest.raises(ValueError, match=r"bank: is empty"):
        metrics.hit_at_k(p, t, np.zeros((0, 4), np.float32), ks=(1,))
    with pytest.raises(ValueError, match=r"predictions and bank: dimensions differ"):
        metrics.mrr(p, t, rng.standard_normal((8, 3)))
    with pytest.raises(ValueError, match=r"predictions and targets: shapes differ"):
        metrics.mrr(p, rng.standard_normal((6, 4)))
    bad = p.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"predictions: row 3 .* NaN"):
        metrics.hit_at_k(bad, t, bank, ks=(1,))
    bad_bank = bank.copy()
    bad_bank[6] = np.inf
    with pytest.raises(ValueError, match=r"bank: row 6"):
        metrics.mrr(p, t, bad_bank)
    with pytest.raises(ValueError, match=r"targets: index 8"):
        metrics.mrr(p, np.array([0, 1, 2, 3, 8]), bank)
    with pytest.raises(ValueError, match=r"predictions: expected shape \(Q, D\)"):
        metrics.mrr(p[0], t, bank)
    with pytest.raises(ValueError, match=r"targets: query 0 has no relevant item"):
        metrics.recall_at_k(p, -np.ones((5, 2), np.int64), bank, ks=(1,))
    with pytest.raises(ValueError, match=r"at least 2 rows"):
        metrics.contrastive_accuracy(p[:1], p[:1])
    with pytest.raises(ValueError, match=r"pred and target: shapes differ"):
        metrics.token_cosine(rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 5)))
    with pytest.raises(ValueError, match=r"mask: expected shape \(2, 3\)"):
        metrics.token_cosine(rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4)),
                             np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"mask: sequence 1 has no real tokens"):
        metrics.sequence_cosine(np.ones((2, 3, 4)), np.ones((2, 3, 4)),
                                np.array([[1, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"pred: row 0 of shape \(1, 2\) contains NaN"):
        metrics.mse(np.array([[1.0, np.nan]]), np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"pred and target: shapes differ"):
        metrics.mae(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=r"at least 2 samples"):
        metrics.r2(np.ones(1), np.ones(1))
    with pytest.raises(ValueError, match=r"n: must be an int in \[1, 3\]"):
        metrics.pca_explained_variance(rng.standard_normal((10, 3)), n=4)
    with pytest.raises(ValueError, match=r"latents: expected shape \(N, d\)"):
        metrics.bottleneck_utilization(np.ones((2, 3, 4)))
