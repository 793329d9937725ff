"""Exact retrieval metrics: top-k search, target ranks, Hit@K, MRR, recall@K, contrastive accuracy.

Scores: ``"cosine"`` and ``"ip"`` (inner product) rank higher first; ``"l2"`` ranks the
smallest squared Euclidean distance first and reports squared distances. Ties are
broken by the lower bank index, so every result is deterministic for any thread count.

The bank may be a NumPy memmap (``np.load(path, mmap_mode="r")``): a float32 C-contiguous
bank is streamed by the kernel tile by tile; any other dtype or layout is converted in
chunks of rows, so the whole bank is never copied.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator, Sequence
from typing import Any, Literal, cast

import numpy as np

from .. import _core
from ._checks import (
    as_array,
    f32_contiguous,
    float_array,
    require_finite_rows,
    shape_str,
)

MetricName = Literal["cosine", "ip", "l2"]
PathName = Literal["auto", "simd", "gemm"]

_METRICS = ("cosine", "ip", "l2")
_PATHS = ("auto", "simd", "gemm")
_CHUNK_BYTES = 64 << 20  # rows converted per chunk when the bank is not float32 C-contiguous

__all__ = [
    "contrastive_accuracy",
    "hit_at_k",
    "mrr",
    "pairwise_cosine",
    "recall_at_k",
    "target_rank",
    "topk",
]


def _check_metric(metric: str) -> MetricName:
    if metric not in _METRICS:
        raise ValueError(f"metric: expected one of {_METRICS}, got {metric!r}")
    return cast(MetricName, metric)


def _check_path(path: str) -> PathName:
    if path not in _PATHS:
        raise ValueError(f"path: expected one of {_PATHS}, got {path!r}")
    return cast(PathName, path)


def _queries(queries: Any, name: str = "queries") -> tuple[np.ndarray, bool]:
    """Queries as float32 (Q, D) and whether a single (D,) query was given."""
    q = float_array(queries, name, (1, 2), "(Q, D) or (D,)")
    single = q.ndim == 1
    q = f32_contiguous(q.reshape(1, -1) if single else q)
    if q.shape[1] == 0:
        raise ValueError(f"{name}: dimension D is 0, shape {shape_str(q.shape)}")
    require_finite_rows(q, name)
    return q, single


def _bank(bank: Any, q: np.ndarray, name: str = "bank", qname: str = "queries") -> np.ndarray:
    """The bank as an (N, D) floating array (a memmap stays a memmap)."""
    b = float_array(bank, name, (2,), "(N, D)")
    if b.shape[0] == 0:
        raise ValueError(f"{name}: is empty, shape {shape_str(b.shape)}")
    if b.shape[1] != q.shape[1]:
        raise ValueError(
            f"{qname} and {name}: dimensions differ, {qname} {shape_str(q.shape)}, "
            f"{name} {shape_str(b.shape)}"
        )
    if b.shape[1] == 0:
        raise ValueError(f"{name}: dimension D is 0, shape {shape_str(b.shape)}")
    return b


def _shared_mapping(bank: np.ndarray) -> mmap.mmap | None:
    """The file mapping behind a bank that is (a view of) a ``np.memmap`` opened shared
    (modes r, r+, w+), whose pages can be dropped after reading without losing anything;
    None otherwise (a copy-on-write ``"c"`` map would lose its private changes)."""
    a: Any = bank
    while isinstance(a, np.ndarray) and not isinstance(a, np.memmap):
        a = a.base
    mm = getattr(a, "_mmap", None)
    if isinstance(a, np.memmap) and isinstance(mm, mmap.mmap) and a.mode in ("r", "r+", "w+"):
        return mm
    return None


def _release_pages(mm: mmap.mmap, rows: np.ndarray) -> None:
    """Drops the whole pages of ``rows`` (a slice of ``mm``) from this process's memory:
    they stay in the page cache, not in its resident set."""
    base = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    page = mmap.PAGESIZE
    first = rows.ctypes.data - base
    start = -(-first // page) * page  # the first page wholly inside the rows
    end = (first + rows.nbytes) // page * page
    if end > start:
        mm.madvise(mmap.MADV_DONTNEED, start, end - start)


def _chunks(bank: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 C-contiguous rows): the bank itself when it already is one in
    memory. A memory-mapped bank is read in chunks of about 64 MB whose pages are
    released after use, so that searching a bank larger than memory keeps the resident
    set at about one chunk."""
    mapping = _shared_mapping(bank)
    if bank.dtype == np.float32 and bank.flags.c_contiguous and mapping is None:
        yield 0, bank
        return
    rows = max(1, _CHUNK_BYTES // max(1, bank.shape[1] * 4))
    for start in range(0, bank.shape[0], rows):
        part = bank[start : start + rows]
        yield start, f32_contiguous(part)
        if mapping is not None and part.flags.c_contiguous:
            _release_pages(mapping, part)


def _check_k(k: Any, n: int, bank_shape: tuple[int, ...], name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(k).__name__}")
    if not 1 <= int(k) <= n:
        raise ValueError(
            f"{name}: must be in [1, N={n}] for a bank of shape {shape_str(bank_shape)}, got {k}"
        )
    return int(k)


def _merge(scores: np.ndarray, indices: np.ndarray, k: int, metric: str) -> tuple[
    np.ndarray, np.ndarray
]:
    key = scores if metric == "l2" else -scores
    order = np.lexsort((indices, key), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(indices, order, 1)


def topk(
    queries: Any,
    bank: Any,
    k: int,
    metric: MetricName = "cosine",
    *,
    path: PathName = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k search of queries against a bank.

    Args:
        queries: (Q, D) or a single query (D,); ndarray or seqlab.Tensor.
        bank: (N, D); ndarray, memmap or seqlab.Tensor.
        k: 1 <= k <= N.
        metric: "cosine", "ip" (inner product) or "l2".
        path: kernel choice: "auto" ("simd" below 20 queries, "gemm" from 20), "simd"
            (the bank streamed in place through the register-tile kernel, threads over
            ranges of rows) or "gemm" (bank chunks packed per thread, threads over chunks
            and query groups). Results agree up to float rounding.

    Returns:
        ``(scores, indices)``, each (Q, k) (or (k,) for a single query), best first:
        cosine/ip scores descending; for "l2", squared Euclidean distances ascending.
        Equal scores are ordered by the lower bank index.
    """
    metric = _check_metric(metric)
    path = _check_path(path)
    q, single = _queries(queries)
    b = _bank(bank, q)
    k = _check_k(k, b.shape[0], b.shape)
    parts_s: list[np.ndarray] = []
    parts_i: list[np.ndarray] = []
    for start, chunk in _chunks(b):
        s, i = _core.topk(q, chunk, min(k, chunk.shape[0]), metric, path, start)
        parts_s.append(s)
        parts_i.append(i)
    if len(parts_s) == 1:
        scores, indices = parts_s[0], parts_i[0]
    else:
        scores, indices = _merge(np.concatenate(parts_s, 1), np.concatenate(parts_i, 1), k, metric)
    if single:
        return scores[0], indices[0]
    return scores, indices


def _target_indices(targets: Any, q: int, n: int, name: str = "targets") -> np.ndarray:
    t = as_array(targets)
    if t.ndim != 1 or t.shape[0] != q:
        raise ValueError(f"{name}: expected shape ({q},) (one bank index per query), "
                         f"got {shape_str(t.shape)}")
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"{name}: expected integer bank indices, got dtype {t.dtype}")
    t = np.ascontiguousarray(t, dtype=np.int64)
    if t.size and (t.min() < 0 or t.max() >= n):
        bad = int(np.flatnonzero((t < 0) | (t >= n))[0])
        raise ValueError(f"{name}: index {int(t[bad])} at position {bad} is outside a bank of "
                         f"{n} rows")
    return t


def target_rank(
    queries: Any,
    targets: Any,
    bank: Any,
    metric: MetricName = "cosine",
    *,
    path: PathName = "auto",
) -> np.ndarray:
    """0-based rank of each query's target among the bank.

    The rank counts the bank items scoring strictly better than the target plus the
    items scoring equally with a lower index, so ``rank < k`` exactly when the target
    is in :func:`topk`'s first k (up to float rounding between kernel paths).

    Args:
        queries: (Q, D) or (D,).
        targets: (Q,) int bank indices.
        bank: (N, D).

    Returns:
        (Q,) int64 ranks in [0, N).
    """
    metric = _check_metric(metric)
    path = _check_path(path)
    q, single = _queries(queries)
    b = _bank(bank, q)
    t = _target_indices(np.atleast_1d(as_array(targets)) if single else targets,
                        q.shape[0], b.shape[0])
    rows = f32_contiguous(b[t])
    require_finite_rows(rows, "bank (target rows)")
    target_scores = _core.ranking_scores(q, rows, metric)
    counts = np.zeros(q.shape[0], dtype=np.int64)
    for start, chunk in _chunks(b):
        _core.count_ranked_above(q, chunk, target_scores, t, counts, metric, path, start)
    return counts


def _ranks(predictions: Any, targets: Any, bank: Any, metric: MetricName,
           ks: Sequence[int] | None = None) -> tuple[np.ndarray, list[int]]:
    """Ranks of the targets and the checked cut-offs; in-batch when bank is None."""
    if bank is None:
        p = float_array(predictions, "predictions", (2,), "(B, D)")
        tv = float_array(targets, "targets", (2,), "(B, D) (vectors, as bank is None)")
        if p.shape != tv.shape:
            raise ValueError(
                f"predictions and targets: shapes differ, predictions {shape_str(p.shape)}, "
                f"targets {shape_str(tv.shape)} (in-batch evaluation needs one target per row)"
            )
        q, _ = _queries(p, "predictions")
        b = _bank(tv, q, "targets", "predictions")
        idx = np.arange(q.shape[0], dtype=np.int64)
        checked = _check_ks(ks, b.shape[0], b.shape) if ks is not None else []
        return target_rank(q, idx, b, metric), checked
    q = float_array(predictions, "predictions", (2,), "(Q, D)")
    b = _bank(bank, q, "bank", "predictions")
    q, _ = _queries(q, "predictions")
    t = _target_indices(targets, q.shape[0], b.shape[0])
    checked = _check_ks(ks, b.shape[0], b.shape) if ks is not None else []
    return target_rank(q, t, b, metric), checked


def _check_ks(ks: Sequence[int] | int, n: int, bank_shape: tuple[int, ...]) -> list[int]:
    ks = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    if not ks:
        raise ValueError("ks: is empty")
    return [_check_k(k, n, bank_shape, "ks") for k in ks]


def hit_at_k(
    predictions: Any,
    targets: Any,
    bank: Any = None,
    ks: Sequence[int] = (1, 5, 10),
    metric: MetricName = "cosine",
) -> dict[str, float]:
    """Share of predictions whose target is among the k best-scoring bank items.

    Args:
        predictions: (Q, D).
        targets: (Q,) int indices into ``bank``; when ``bank`` is None, (Q, D) target
            vectors that form the bank themselves (in-batch evaluation: the target of
            prediction i is row i).
        bank: (N, D) or None.
        ks: cut-offs, each in [1, N].

    Returns:
        ``{"hit@1": ..., "hit@5": ..., "hit@10": ...}`` (one key per k), values in [0, 1].
    """
    metric = _check_metric(metric)
    ranks, ks = _ranks(predictions, targets, bank, metric, ks)
    return {f"hit@{k}": float(np.mean(ranks < k)) for k in ks}


def mrr(
    predictions: Any,
    targets: Any,
    bank: Any = None,
    metric: MetricName = "cosine",
) -> float:
    """Mean reciprocal rank, mean of 1 / (rank + 1) with 0-based ranks; arguments as
    :func:`hit_at_k`."""
    metric = _check_metric(metric)
    ranks, _ = _ranks(predictions, targets, bank, metric)
    return float(np.mean(1.0 / (ranks + 1.0)))


def recall_at_k(
    predictions: Any,
    targets: Any,
    bank: Any = None,
    ks: Sequence[int] = (1, 5, 10),
    metric: MetricName = "cosine",
) -> dict[str, float]:
    """Mean over queries of the share of a query's relevant bank items found in its top k.

    Args:
        predictions: (Q, D).
        targets: (Q,) one relevant index per query, or (Q, R) relevant indices padded
            with -1 (each query needs at least one); when ``bank`` is None, (Q, D)
            vectors forming the bank (in-batch: row i is relevant to prediction i).
        bank: (N, D) or None.
        ks: cut-offs, each in [1, N].

    Returns:
        ``{"recall@1": ..., ...}``; with one relevant item per query it equals Hit@K.
    """
    metric = _check_metric(metric)
    if bank is None:
        tv = float_array(targets, "targets", (2,), "(B, D) (vectors, as bank is None)")
        rel = np.arange(tv.shape[0], dtype=np.int64)[:, None]
        bank_arr = tv
        qarr = float_array(predictions, "predictions", (2,), "(B, D)")
        if qarr.shape != tv.shape:
            raise ValueError(
                f"predictions and targets: shapes differ, predictions {shape_str(qarr.shape)}, "
                f"targets {shape_str(tv.shape)}"
            )
    else:
        qarr = float_array(predictions, "predictions", (2,), "(Q, D)")
        bank_arr = bank
        r = as_array(targets)
        if r.ndim == 1:
            r = r[:, None]
        if r.ndim != 2 or r.shape[0] != qarr.shape[0]:
            raise ValueError(f"targets: expected shape ({qarr.shape[0]},) or "
                             f"({qarr.shape[0]}, R), got {shape_str(as_array(targets).shape)}")
        if not np.issubdtype(r.dtype, np.integer):
            raise TypeError(f"targets: expected integer bank indices, got dtype {r.dtype}")
        rel = r.astype(np.int64)
    q, _ = _queries(qarr, "predictions")
    b = _bank(bank_arr, q, "bank" if bank is not None else "targets", "predictions")
    n = b.shape[0]
    if rel.size and (rel.max() >= n or rel.min() < -1):
        raise ValueError(f"targets: indices must be in [0, {n}) (or -1 for padding)")
    valid = rel >= 0
    n_rel = valid.sum(1)
    if (n_rel == 0).any():
        raise ValueError(f"targets: query {int(np.flatnonzero(n_rel == 0)[0])} has no relevant "
                         "item")
    ks = _check_ks(ks, n, b.shape)
    _, top = topk(q, b, max(ks), metric)
    match = (top[:, :, None] == rel[:, None, :]) & valid[:, None, :]
    found = np.cumsum(match.any(2), axis=1)  # (Q, kmax): relevant items in the first k
    return {f"recall@{k}": float(np.mean(found[:, k - 1] / n_rel)) for k in ks}


def contrastive_accuracy(
    predictions: Any,
    targets: Any,
    metric: MetricName = "l2",
) -> float:
    """Share of in-batch candidates farther from the prediction than its true target.

    For each prediction i, counts the targets j != i strictly farther from prediction i
    than target i (larger L2 distance, or lower cosine / inner product), divided by B - 1,
    then averaged over the batch (as reported by the Large Concept Model paper).

    Args:
        predictions: (B, D), B >= 2.
        targets: (B, D); row i is the true target of prediction i.
    """
    metric = _check_metric(metric)
    p = float_array(predictions, "predictions", (2,), "(B, D)")
    t = float_array(targets, "targets", (2,), "(B, D)")
    if p.shape != t.shape:
        raise ValueError(f"predictions and targets: shapes differ, predictions "
                         f"{shape_str(p.shape)}, targets {shape_str(t.shape)}")
    if p.shape[0] < 2:
        raise ValueError(f"predictions: need at least 2 rows for in-batch candidates, got "
                         f"{shape_str(p.shape)}")
    p, _ = _queries(p, "predictions")
    t, _ = _queries(t, "targets")
    s = _core.pairwise_scores(p, t, metric)  # (B, B)
    true = np.diag(s)[:, None]
    farther = s > true if metric == "l2" else s < true
    np.fill_diagonal(farther, False)
    return float(np.mean(farther.sum(1) / (p.shape[0] - 1)))


def pairwise_cosine(a: Any, b: Any = None) -> np.ndarray:
    """Cosine similarity matrix (M, N) of a (M, D) against b (N, D) (b defaults to a)."""
    x, _ = _queries(float_array(a, "a", (2,), "(M, D)"), "a")
    y = x if b is None else _queries(float_array(b, "b", (2,), "(N, D)"), "b")[0]
    if y.shape[1] != x.shape[1]:
        raise ValueError(f"a and b: dimensions differ, a {shape_str(x.shape)}, "
                         f"b {shape_str(y.shape)}")
    return _core.pairwise_scores(x, y, "cosine")
