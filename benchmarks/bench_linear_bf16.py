"""The linear layer's three GEMMs (forward, input gradient, weight gradient) at the code LM's
shapes, fp32 against bf16 on each bf16 engine, in GFLOP/s beside the engines' ceilings.

Shapes: the ``small`` preset's (M = 16 x 128 = 2,048 rows; d_model 128: q/k/v 128 -> 384,
output projection 128 -> 128, MLP 128 -> 512 -> 128, tied output layer 128 -> 4,096) and the
``original`` preset's (M = 32 x 128 = 4,096; d_model 256, MLP 1,024, vocabulary 50,000).
Each product is one ``_core.linear_forward`` / ``linear_backward`` call; a call's time
includes its operands' rounding to bf16 and packing. Each engine runs in its own process
(``SEQLAB_BF16_AMX=0`` selects the vdpbf16ps tiles), timed by the process's CPU time: GFLOP/s
per CPU-second, i.e. per busy core at any thread count
(``--clock wall`` for wall time on a quiet machine).

Ceilings per core, measured in registers by ``benchmarks/bf16_tile_ceiling.cpp`` on the
project's Sapphire Rapids VM: fp32 FMA ~120-160 GFLOP/s, vdpbf16ps ~60-85 (about half of
FMA: it issues about once every two cycles), AMX tdpbf16ps ~1,000-1,750.

    python benchmarks/bench_linear_bf16.py                   # 1 thread, both presets' shapes
    python benchmarks/bench_linear_bf16.py --threads 2 --preset small
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harness import machine_description, markdown_table, median_seconds

SHAPES = {
    "small": [(2048, 128, 384), (2048, 128, 128), (2048, 128, 512), (2048, 512, 128), (2048, 128, 4096)],
    "original": [(4096, 256, 768), (4096, 256, 256), (4096, 256, 1024), (4096, 1024, 256),
                 (4096, 256, 50000)],
}
ENGINES = {"fp32": {}, "bf16 amx": {}, "bf16 avx512_bf16": {"SEQLAB_BF16_AMX": "0"}}
CEILING = {"fp32": "~120-160", "bf16 amx": "~1,000-1,750", "bf16 avx512_bf16": "~60-85"}


def worker(engine: str, threads: int, shapes: list[tuple[int, int, int]], clock: str) -> None:
    import seqlab
    from seqlab import _core

    seqlab.set_num_threads(threads)
    bf16 = engine != "fp32"
    if bf16 and engine.split()[1] != _core.bf16_gemm_engine():
        print(json.dumps({"skipped": f"the bf16 engine here is {_core.bf16_gemm_engine()}"}))
        return
    timer = time.process_time if clock == "cpu" else time.perf_counter
    rng = np.random.default_rng(0)
    rows = []
    for M, K, N in shapes:
        x = rng.standard_normal((M, K), dtype=np.float32)
        w = rng.standard_normal((N, K), dtype=np.float32) * 0.1
        g = rng.standard_normal((M, N), dtype=np.float32)
        gw = np.zeros((N, K), np.float32)
        repeats = 3 if M * N * K > 10**10 else 7
        backward = functools.partial(_core.linear_backward, g, x, w)
        calls = {
            "forward": functools.partial(_core.linear_forward, x, w, None, "none", None, bf16),
            "grad input": functools.partial(backward, None, None, True, "none", None, bf16),
            "grad weight": functools.partial(backward, gw, None, False, "none", None, bf16),
        }
        rows.append({name: 2 * M * K * N / median_seconds(fn, repeats=repeats, warmup=1, clock=timer) / 1e9
                     for name, fn in calls.items()})
    print(json.dumps({"gflops": rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=[*SHAPES, "both"], default="both")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    parser.add_argument("--worker", choices=list(ENGINES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    shapes = [s for p in (SHAPES if args.preset == "both" else [args.preset]) for s in SHAPES[p]]
    if args.worker:
        worker(args.worker, args.threads, shapes, args.clock)
        return
    print(machine_description())
    print(f"{args.threads} thread(s), GFLOP/s by {'process CPU' if args.clock == 'cpu' else 'wall'} time")
    results = {}
    for engine, env in ENGINES.items():
        out = subprocess.run(
            [sys.executable, __file__, "--worker", engine, "--preset", args.preset, "--threads",
             str(args.threads), "--clock", args.clock],
            env={**os.environ, **env}, capture_output=True, text=True, check=True,
            cwd=Path(__file__).parent,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if "skipped" in result:
            print(f"{engine}: skipped ({result['skipped']})")
            continue
        results[engine] = result["gflops"]
    table = []
    for i, (M, K, N) in enumerate(shapes):
        for engine, rows in results.items():
            r = rows[i]
            table.append([f"{M} x {K} -> {N}", engine, f"{r['forward']:.0f}", f"{r['grad input']:.0f}",
                          f"{r['grad weight']:.0f}", CEILING[engine]])
    print(markdown_table(["M x K -> N", "engine", "forward", "grad input", "grad weight", "ceiling"], table))


if __name__ == "__main__":
    main()
