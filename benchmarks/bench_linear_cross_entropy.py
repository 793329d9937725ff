"""The tied output layer and its cross-entropy, forward and backward: seqlab's fused
``F.linear_cross_entropy`` against seqlab unfused (``cross_entropy(linear(x, W), t)``, the
(N, V) logits in memory) and PyTorch (``cross_entropy(x @ W.T, t)``), at the code LM's
shapes (preset ``small``: N = 16 x 128 rows, D = 128, V = 4096).

seqlab's two paths alternate in blocks in one process; PyTorch runs in its own process.
Times are medians of CPU seconds (``time.process_time``) by default, a guide on a shared
machine at 1 thread; ``--wall`` for wall-clock seconds on a quiet one. Also prints the
minor page faults per call (fresh memory the call touches). Peak memory of a whole training
step, fused and not: ``bench_code_lm.py --libraries seqlab seqlab-unfused``.

    python benchmarks/bench_linear_cross_entropy.py                 # 1 thread, CPU time
    python benchmarks/bench_linear_cross_entropy.py --threads 2 --wall
    python benchmarks/bench_linear_cross_entropy.py --precision bf16   # seqlab's products in bf16

``--precision bf16`` runs seqlab's two paths under ``gemm_precision("bf16")`` (the fused
one on AMX tiles where ``bf16_gemm_engine()`` is ``"amx"``); PyTorch stays fp32.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harness import machine_description, markdown_table


def problem(n: int, d: int, v: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)).astype(np.float32)
    w = (rng.standard_normal((v, d)) * 0.02).astype(np.float32)
    return x, w, rng.integers(0, v, n)


def timed_blocks(fns: dict, repeats: int, rounds: int, clock) -> dict[str, dict[str, float]]:
    """Median seconds and minor page faults per call of each fn, timed in alternating blocks."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    faults: dict[str, list[int]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(repeats):
                t0 = clock()
                fn()
                times[name].append(clock() - t0)
            faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    calls = rounds * repeats
    return {k: {"seconds": statistics.median(times[k]), "faults": sum(faults[k]) / calls} for k in fns}


def worker(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    x, w, t = problem(args.rows, args.d, args.vocab)
    clock = time.perf_counter if args.wall else time.process_time
    if args.worker == "torch":
        import torch

        torch.set_num_threads(args.threads)
        xt = torch.tensor(x, requires_grad=True)
        wt = torch.tensor(w, requires_grad=True)
        tt = torch.tensor(t)

        def torch_step() -> None:
            xt.grad = wt.grad = None
            torch.nn.functional.cross_entropy(xt @ wt.T, tt).backward()

        fns = {"torch": torch_step}
    else:
        import seqlab
        import seqlab.functional as F

        seqlab.set_num_threads(args.threads)
        xs = seqlab.tensor(x, requires_grad=True)
        ws = seqlab.tensor(w, requires_grad=True)

        def fused() -> None:
            xs.grad = ws.grad = None
            with F.gemm_precision(args.precision):
                F.linear_cross_entropy(xs, ws, t).backward()

        def unfused() -> None:
            xs.grad = ws.grad = None
            with F.gemm_precision(args.precision):
                F.cross_entropy(F.linear(xs, ws), t).backward()

        fns = {"seqlab fused": fused, "seqlab unfused": unfused}
    return timed_blocks(fns, args.repeats, args.rounds, clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wall", action="store_true", help="wall-clock instead of CPU seconds")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="seqlab's GEMM precision")
    parser.add_argument("--worker", choices=["seqlab", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    print(machine_description())
    results: dict[str, dict[str, float]] = {}
    for lib in ("seqlab", "torch"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", lib] + [
            f"--{k}={getattr(args, k)}"
            for k in ("rows", "d", "vocab", "threads", "repeats", "rounds", "precision")
        ] + (["--wall"] if args.wall else [])
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.update(json.loads(done.stdout.strip().splitlines()[-1]))
    flops = 6.0 * args.rows * args.d * args.vocab  # the three GEMMs
    fused = results["seqlab fused"]["seconds"]
    rows = [
        (
            name,
            f"{r['seconds'] * 1e3:.1f}",
            f"{flops / r['seconds'] / 1e9:.0f}",
            f"{r['seconds'] / fused:.2f}x",
            f"{r['faults']:.0f}",
        )
        for name, r in results.items()
    ]
    clock = "wall" if args.wall else "CPU"
    print(f"N {args.rows}, D {args.d}, V {args.vocab}, {args.threads} thread(s), {clock} time, fwd + bwd, "
          f"seqlab in {args.precision}, torch in fp32")
    print(
        markdown_table(
            ["path", f"ms ({clock})", "GFLOP/s (3 GEMMs)", "time / fused", "page faults / call"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
