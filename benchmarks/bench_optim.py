"""Adam step over ~10M parameters: seqlab (one flat-buffer SIMD pass) vs torch.optim.Adam.

Same parameter shapes, same gradients, same thread count, in one process. Prints the
median time of each, the ratio (torch / seqlab), and the achieved memory bandwidth
(Adam reads param, grad, exp_avg, exp_avg_sq and writes param, exp_avg, exp_avg_sq:
28 bytes per parameter).

    PYTHONPATH=python python benchmarks/bench_optim.py [--params 10000000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import seqlab

BYTES_PER_PARAM = 7 * 4


def _shapes(total: int) -> list[tuple[int, ...]]:
    """A model-like mix: square-ish matrices and bias vectors summing to about ``total``."""
    shapes: list[tuple[int, ...]] = []
    n = 0
    while n < total:
        shapes += [(1024, 768), (768,), (768, 768), (768,)]
        n += 1024 * 768 + 768 * 768 + 2 * 768
    return shapes


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (allocates optimizer state)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import torch

    rng = np.random.default_rng(0)
    shapes = _shapes(args.params)
    values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    total = sum(v.size for v in values)

    ours = [seqlab.nn.Parameter(v) for v in values]
    opt = seqlab.optim.Adam(ours, lr=1e-3, weight_decay=0.01)
    for p, g in zip(ours, grads, strict=True):
        p.grad = g.copy()
    opt.step()  # grads now live in the flat buffer: the steady state of training

    theirs = [torch.nn.Parameter(torch.tensor(v)) for v in values]
    for p, g in zip(theirs, grads, strict=True):
        p.grad = torch.tensor(g)
    peers = {
        "torch Adam (default)": torch.optim.Adam(theirs, lr=1e-3, weight_decay=0.01),
        "torch Adam (foreach)": torch.optim.Adam(theirs, lr=1e-3, weight_decay=0.01, foreach=True),
    }

    print(f"Adam step, {total / 1e6:.2f}M parameters in {len(shapes)} tensors, float32")
    print(f"{'threads':>7}  {'implementation':<22} {'median ms':>10} {'GB/s':>7} {'ratio':>7}")
    for threads in args.threads:
        seqlab.set_num_threads(threads)
        torch.set_num_threads(threads)
        ours_t = _median_seconds(opt.step, args.repeats)
        rows = [("seqlab Adam", ours_t)]
        for name, topt in peers.items():
            rows.append((name, _median_seconds(topt.step, args.repeats)))
        for name, t in rows:
            gbs = total * BYTES_PER_PARAM / t / 1e9
            ratio = t / ours_t
            print(f"{threads:>7}  {name:<22} {t * 1e3:>10.2f} {gbs:>7.1f} {ratio:>6.2f}x")
    print("ratio = implementation time / seqlab time (above 1: seqlab is faster)")
    src = np.ones(total * 4, dtype=np.float32)  # 16 B/param read + 12 B written, as Adam
    dst = np.empty_like(src)
    copy_t = _median_seconds(lambda: np.copyto(dst, src), max(3, args.repeats // 2))
    print(f"reference: numpy copy of the same traffic {2 * src.nbytes / copy_t / 1e9:.1f} GB/s "
          "(one thread); DESIGN.md's reference machine streams ~11.5 GB/s per core")


if __name__ == "__main__":
    main()
