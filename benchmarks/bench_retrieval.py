"""Exact top-k retrieval: seqlab vs NumPy (GEMM + argpartition) vs faiss IndexFlatIP.

Same process, same float32 data, same thread count for all three; inner-product top-10.
Prints a Markdown table with medians, ratios, and the achieved GB/s (Q = 1, memory
bound: the bank is read once) or GFLOP/s (Q > 1) beside the machine's nominal ceiling
(--bandwidth, --gemm-peak). The "scores-only BLAS" column is the measured floor: NumPy's
sgemm/sgemv writing the (Q, N) score matrix with no selection at all.

    python benchmarks/bench_retrieval.py            # full grid (needs ~10 GB of RAM)
    python benchmarks/bench_retrieval.py --quick    # N = 100k, D = 384 only
    python benchmarks/bench_retrieval.py --threads 1 --n 1000000 --d 768 --q 1

The bank for each D is generated once at the largest N and sliced for smaller N.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N=100k, D=384 only, fewer repeats")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--d", type=int, nargs="+", default=[384, 768])
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--q", type=int, nargs="+", default=[1, 16, 1000])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--budget", type=float, default=4.0,
                    help="seconds of timing per peer and row (repeats adapt, 3..15)")
    ap.add_argument("--bandwidth", type=float, default=11.5, help="GB/s per core")
    ap.add_argument("--gemm-peak", type=float, default=120.0, help="GFLOP/s per core, large M")
    ap.add_argument("--gemm-peak-small", type=float, default=50.0,
                    help="GFLOP/s per core at M = 16")
    ap.add_argument("--no-numpy", action="store_true")
    ap.add_argument("--interleaved", action="store_true",
                    help="alternate the peers' calls instead of timing each in a block")
    ap.add_argument("--no-faiss", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.d, args.n, args.budget = [384], [100_000], 1.5
    return args


ARGS = parse_args()
# NumPy's BLAS reads its thread count when it loads.
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)

import time  # noqa: E402

import numpy as np  # noqa: E402

import seqlab  # noqa: E402
from seqlab import metrics  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (  # noqa: E402
    interleaved_medians,
    machine_description,
    markdown_table,
    median_seconds,
)


def numpy_topk(q: np.ndarray, bank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """GEMM + argpartition, in query chunks that keep the score matrix under 512 MB."""
    rows = max(1, (512 << 20) // (bank.shape[0] * 4))
    out_s, out_i = [], []
    for start in range(0, q.shape[0], rows):
        s = q[start : start + rows] @ bank.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        ps = np.take_along_axis(s, part, 1)
        order = np.argsort(-ps, axis=1, kind="stable")
        out_s.append(np.take_along_axis(ps, order, 1))
        out_i.append(np.take_along_axis(part, order, 1))
    return np.concatenate(out_s), np.concatenate(out_i)


def timed(fns: list, budget: float) -> list[float]:
    """Median seconds of each function.

    By default each peer is timed in its own block after a pause: OpenBLAS and OpenMP
    worker threads spin for a while after a call, and on a machine with as many threads
    as cores a spinning peer would steal the core of the next library's second thread.
    ``--interleaved`` alternates the calls instead (fair against slow drift, unfair
    against libraries whose threads sleep).
    """
    t0 = time.perf_counter()
    for fn in fns:
        fn()
    one = (time.perf_counter() - t0) / len(fns)
    repeats = int(min(15, max(3, budget / max(one, 1e-6))))
    if ARGS.interleaved:
        return interleaved_medians(fns, repeats=repeats, warmup=1)
    out = []
    for fn in fns:
        time.sleep(0.5)
        out.append(median_seconds(fn, repeats=repeats, warmup=1))
    return out


def bench_row(bank: np.ndarray, index: object, queries: np.ndarray, k: int) -> list[object]:
    """One table row: times of each peer on the same queries and bank."""
    n, d = bank.shape
    q = queries.shape[0]
    threads = ARGS.threads
    fns = {"seqlab": lambda: metrics.topk(queries, bank, k, "ip")}
    if index is not None:
        fns["faiss"] = lambda: index.search(queries, k)
    if not ARGS.no_numpy:
        fns["numpy"] = lambda: numpy_topk(queries, bank, k)
    _, ours = metrics.topk(queries, bank, k, "ip")
    agree = {name: float((fn()[1] == ours).mean()) for name, fn in fns.items() if name != "seqlab"}
    if not ARGS.no_numpy and q * n * 4 <= (1 << 30):
        # The measured floor: the score matrix alone (sgemm/sgemv), no selection.
        out = np.empty((q, n), np.float32)
        fns["blas"] = lambda: np.matmul(queries, bank.T, out=out)
    times = dict(zip(fns, timed(list(fns.values()), ARGS.budget), strict=True))
    t = times["seqlab"]
    if q == 1:
        achieved, unit = n * d * 4 / t / 1e9, "GB/s"
        ceiling = ARGS.bandwidth * threads
    else:
        achieved, unit = 2.0 * q * n * d / t / 1e9, "GFLOP/s"
        ceiling = (ARGS.gemm_peak_small if q < 64 else ARGS.gemm_peak) * threads
    row: list[object] = [d, n, q, t * 1e3]
    for peer in ("faiss", "numpy"):
        row += [times[peer] * 1e3, times[peer] / t] if peer in times else ["-", "-"]
    row += [times["blas"] * 1e3, times["blas"] / t] if "blas" in times else ["-", "-"]
    row += [f"{achieved:.1f} {unit}", f"{achieved / ceiling:.2f}",
            " ".join(f"{p}={a:.3f}" for p, a in agree.items())]
    return row


def main() -> None:
    threads = ARGS.threads
    seqlab.set_num_threads(threads)
    faiss = None
    if not ARGS.no_faiss:
        try:
            import faiss

            faiss.omp_set_num_threads(threads)
        except ImportError:
            print("faiss not installed: skipping its column", file=sys.stderr)
    rng = np.random.default_rng(0)
    rows = []
    print(markdown_table(HEADER, []), flush=True)
    for d in ARGS.d:
        big = rng.standard_normal((max(ARGS.n), d), dtype=np.float32)
        for n in sorted(ARGS.n):
            bank = big[:n]
            index = None
            if faiss is not None:
                index = faiss.IndexFlatIP(d)
                index.add(bank)
            for q in ARGS.q:
                queries = rng.standard_normal((q, d), dtype=np.float32)
                row = bench_row(bank, index, queries, ARGS.k)
                rows.append(row)
                print(markdown_table(HEADER, [row]).splitlines()[-1], flush=True)
            del index
        del big
    print()
    mode = "interleaved" if ARGS.interleaved else "each peer timed in its own block"
    print(f"Machine: {machine_description()}; threads = {threads}; k = {ARGS.k}; "
          f"inner product; {mode}")
    print(f"Ceilings: {ARGS.bandwidth} GB/s per core read bandwidth (Q = 1), "
          f"{ARGS.gemm_peak_small} GFLOP/s per core sgemm at M = 16, {ARGS.gemm_peak} at large M")
    print()
    print(markdown_table(HEADER, rows))


HEADER = ["D", "N", "Q", "seqlab ms", "faiss ms", "faiss/seqlab", "numpy ms", "numpy/seqlab",
          "scores-only BLAS ms", "BLAS/seqlab", "seqlab achieved", "of nominal ceiling",
          "same indices"]

if __name__ == "__main__":
    main()
