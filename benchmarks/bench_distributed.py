"""Data-parallel training on MPI: throughput of 1 process (2 threads), 2 ranks (1 thread each)
and 1 process (1 thread), the share of a step spent in the gradient allreduce, the loss
curves of 1 and 2 ranks overlaid, and a cost model of many machines.

Recipes: the LSTM forecaster (``preset("small", "lstm")`` on a synthetic hourly series of
8000 steps, input 96, horizon 24) and the poetry autoencoder (``"small"`` preset on the
default corpus). Each configuration runs in its own process(es), one after another:

    python benchmarks/bench_distributed.py                      # both recipes, 3 configurations
    python benchmarks/bench_distributed.py --quick --epochs 1   # checks that it runs

Every rank trains on its shard with the per-rank batch of the preset, so 2 ranks take
steps of twice the samples (as PyTorch DDP does); throughput is training samples per
second of training time (evaluation excluded), summed over the ranks.

The cost model (printed after the table): a ring allreduce of G gradient bytes over N ranks
takes ``2 (N - 1) / N * G / bandwidth + 2 (N - 1) * latency``; with a rank's compute per
step T (measured: the 2-rank run's time per step minus its allreduce and the wait for the
other rank before it) the parallel
efficiency without overlap is ``T / (T + allreduce)``. It prints the largest rank
count above 80% efficiency on 10 GbE (1.25 GB/s, 25 us per message) and 100 GbE (12.5 GB/s,
5 us).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness import machine_description, markdown_table

HERE = Path(__file__).resolve()
CONFIGS = (("1 process, 2 threads", 1, 2), ("2 ranks, 1 thread each", 2, 1), ("1 process, 1 thread", 1, 1))
NETWORKS = (("10 GbE", 1.25e9, 25e-6), ("100 GbE", 12.5e9, 5e-6))
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "true",
    "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
}


# ------------------------------------------------------------------ worker side
class _AllreduceClock:
    wait_seconds = 0.0
    seconds = 0.0
    steps = 0
    grad_bytes = 0


def _time_allreduce() -> None:
    """Wraps DataParallel.reduce_gradients with a clock (this benchmark process only): a
    barrier first measures the wait for the slowest rank, then the allreduce itself."""
    from seqlab.distributed import DataParallel, barrier

    reduce = DataParallel.reduce_gradients

    def timed(self: Any, trainer: Any, loss: float) -> float:
        start = time.perf_counter()
        barrier()
        mid = time.perf_counter()
        out = reduce(self, trainer, loss)
        _AllreduceClock.wait_seconds += mid - start
        _AllreduceClock.seconds += time.perf_counter() - mid
        _AllreduceClock.steps += 1
        _AllreduceClock.grad_bytes = int(trainer.optimizer.flat.grad.nbytes)
        return out

    DataParallel.reduce_gradients = timed  # type: ignore[method-assign]


def _lstm(epochs: int, quick: bool) -> dict[str, Any]:
    from seqlab.data.timeseries import TimeSeries, make_splits
    from seqlab.models.forecast import preset
    from seqlab.train.forecaster import Forecaster

    rng = np.random.default_rng(0)
    t = np.arange(2000 if quick else 8000)
    y = np.sin(2 * np.pi * t / 24) + 0.5 * np.sin(2 * np.pi * t / 168) + 0.1 * rng.standard_normal(len(t))
    splits = make_splits(TimeSeries(y[:, None].astype(np.float32), ["y"]), 96, 24, "y", (0.8, 0.1, 0.1))
    fitted = Forecaster.fit(splits, preset("small", "lstm", epochs=epochs, patience=0))
    history = fitted.history[0]
    return {
        "samples": int(splits.train[0].shape[0]) * len(history),
        "train_seconds": float(sum(h["seconds"] for h in history)),
        "steps": None,
        "train_loss": [h["train_loss"] for h in history],
        "val_loss": [h["val_loss"] for h in history],
    }


def _poetry(epochs: int, quick: bool) -> dict[str, Any]:
    import seqlab
    from seqlab import distributed as dist

    # one run directory for every rank: rank 0's
    out = Path(dist.broadcast_object(tempfile.mkdtemp(prefix="bench-distributed-poetry-")))
    seqlab.poetry_autoencoder(None, "tiny" if quick else "small", epochs=epochs, patience=epochs + 1,
                              out=out / "run", progress=False, verbose=False)
    dist.barrier()
    if not dist.is_main():
        return {}
    metrics = json.loads((out / "run" / "training_metrics.json").read_text())
    chunks = json.loads((out / "run" / "evaluation.json").read_text())["data"]["chunks"]["train"]
    shutil.rmtree(out, ignore_errors=True)
    history = metrics["history"]
    return {
        "samples": int(chunks) * len(history),
        "train_seconds": float(metrics["timing"]["train_seconds"]),
        "steps": int(metrics["timing"]["steps"]),
        "train_loss": [h["train_loss"] for h in history],
        "val_loss": [h["val_loss"] for h in history],
    }


def worker(recipe: str, epochs: int, threads: int, result: Path, quick: bool) -> None:
    import seqlab
    from seqlab import distributed as dist

    dist.init()
    seqlab.set_num_threads(threads)
    _time_allreduce()
    row = {"lstm": _lstm, "poetry": _poetry}[recipe](epochs, quick)
    if dist.is_main():
        row.update(
            world=dist.world_size(), threads=threads, allreduce_seconds=_AllreduceClock.seconds,
            wait_seconds=_AllreduceClock.wait_seconds,
            allreduce_calls=_AllreduceClock.steps, grad_bytes=_AllreduceClock.grad_bytes,
        )
        result.write_text(json.dumps(row))


# ------------------------------------------------------------------ driver side
def run_config(
    recipe: str, epochs: int, ranks: int, threads: int, out: Path, quick: bool
) -> dict[str, Any]:
    result = out / f"{recipe}-{ranks}x{threads}.json"
    cmd = [sys.executable, str(HERE), "--worker", recipe, "--epochs", str(epochs), "--threads", str(threads),
           "--result", str(result), *(["--quick"] if quick else [])]
    if ranks > 1:
        mpirun = shutil.which("mpirun")
        if mpirun is None:
            raise SystemExit("bench_distributed: mpirun not found (Debian: openmpi-bin; pip: seqlab[mpi])")
        cmd = [mpirun, "-np", str(ranks), "--bind-to", "core", *cmd]
    env = {**os.environ, **MPI_ENV, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    subprocess.run(cmd, env=env, check=True)
    return json.loads(result.read_text())


def ring_allreduce_seconds(grad_bytes: int, ranks: int, bandwidth: float, latency: float) -> float:
    """Ring allreduce time: 2 (N - 1) / N * G / bandwidth + 2 (N - 1) * latency."""
    if ranks <= 1:
        return 0.0
    return 2 * (ranks - 1) / ranks * grad_bytes / bandwidth + 2 * (ranks - 1) * latency


def ranks_until(step_seconds: float, grad_bytes: int, bandwidth: float, latency: float,
                efficiency: float = 0.8, limit: int = 1 << 20) -> int | None:
    """The largest rank count whose efficiency T / (T + allreduce) stays >= ``efficiency``
    (None: still above at ``limit`` ranks)."""
    def ok(n: int) -> bool:
        comm = ring_allreduce_seconds(grad_bytes, n, bandwidth, latency)
        return step_seconds / (step_seconds + comm) >= efficiency

    if not ok(2):
        return 1
    if ok(limit):
        return None
    lo, hi = 2, limit  # ok(lo), not ok(hi); efficiency falls with n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def plot_curves(rows: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 3.5), squeeze=False)
    for ax, (recipe, configs) in zip(axes[0], rows.items()):
        for name, style in (("1 process, 2 threads", "-"), ("2 ranks, 1 thread each", "--")):
            if name in configs:
                r = configs[name]
                epochs = np.arange(1, len(r["train_loss"]) + 1)
                ax.plot(epochs, r["train_loss"], style, marker="o", ms=3, color="C0", label=f"train, {name}")
                ax.plot(epochs, r["val_loss"], style, marker="o", ms=3, color="C1", label=f"val, {name}")
        ax.set_title(recipe)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipes", nargs="+", choices=["lstm", "poetry"], default=["lstm", "poetry"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--plot", type=Path, default=Path(__file__).parent / "distributed_loss_curves.png")
    parser.add_argument("--quick", action="store_true",
                        help="check that it runs: a 2000-step series and the tiny poetry preset")
    parser.add_argument("--worker", choices=["lstm", "poetry"], help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.epochs, args.threads, args.result, args.quick)
        return

    print(machine_description())
    out = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    table = []
    for recipe in args.recipes:
        rows[recipe] = {}
        for name, ranks, threads in CONFIGS:
            r = run_config(recipe, args.epochs, ranks, threads, out, args.quick)
            rows[recipe][name] = r
        single = rows[recipe]["1 process, 1 thread"]
        base = single["samples"] / single["train_seconds"]
        for name, r in rows[recipe].items():
            rate = r["samples"] / r["train_seconds"]
            share = r["allreduce_seconds"] / r["train_seconds"]
            wait = r["wait_seconds"] / r["train_seconds"]
            table.append([recipe, name, rate, rate / base, f"{100 * share:.1f}%", f"{100 * wait:.1f}%",
                          r["val_loss"][-1]])
    print(f"\n{args.epochs} epochs each; samples/s of training time, summed over ranks\n")
    print(markdown_table(["recipe", "configuration", "samples/s", "vs 1 thread", "allreduce share",
                          "waiting for the other rank", "final val loss"], table))

    print("\nCost model (ring allreduce, no overlap; step compute = the 2-rank run's step time "
          "minus its allreduce and wait, per rank):\n")
    model_rows = []
    for recipe, configs in rows.items():
        two = configs["2 ranks, 1 thread each"]
        steps = max(two["allreduce_calls"], 1)
        compute = (two["train_seconds"] - two["allreduce_seconds"] - two["wait_seconds"]) / steps
        grad = two["grad_bytes"]
        row: list[object] = [recipe, f"{grad / 1e6:.3f} MB", f"{1e3 * compute:.2f} ms",
                             f"{1e6 * two['allreduce_seconds'] / steps:.0f} us"]
        for _, bw, lat in NETWORKS:
            n = ranks_until(compute, grad, bw, lat)
            row.append("more than 10^6" if n is None else str(n))
        model_rows.append(row)
    print(markdown_table(["recipe", "gradient bytes", "step compute", "allreduce, 2 ranks (shared memory)",
                          *[f"ranks >= 80% on {name}" for name, _, _ in NETWORKS]], model_rows))
    plot_curves(rows, args.plot)
    print(f"\nloss curves: {args.plot}")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
