"""The code LM's fp32 training-step kernels one by one, at each thread count: where the 1 -> 2
thread scaling of ``bench_code_lm.py`` is lost.

At a preset's shapes (``small``: batch 16 x 128 tokens, d_model 128, 4 heads, MLP 512) it
times the forward and the backward of each op of a transformer block as the training step
calls it (the functional op and its tape node's backward: the kernel plus its few lines
of Python): LayerNorm, the four linear layers (q/k/v, output projection, MLP with
GELU, MLP output) and the causal attention over the packed q/k/v projection. The thread
counts alternate in blocks (``--rounds`` of ``--repeats`` calls each, after a warm-up
call), so drift on a shared machine hits every count alike; medians of wall-clock seconds.

    python benchmarks/bench_code_lm_kernels.py                      # threads 1 2, preset small
    python benchmarks/bench_code_lm_kernels.py --threads 1 2 --repeats 20 --rounds 3 --json out.json
    python benchmarks/bench_code_lm_kernels.py --min      # fastest calls: a guide on a shared machine
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from harness import machine_description, markdown_table


def block_ops(cfg) -> dict[str, Callable[[], Any]]:
    """Per op name, a function running the op's forward on fixed inputs (that need grad)
    and returning its output tensor, whose tape node ``_backward`` runs the backward."""
    from seqlab import functional as F
    from seqlab.autograd import Tensor

    rng = np.random.default_rng(0)
    M, E, Fd, H = cfg.batch_size * cfg.seq_len, cfg.d_model, cfg.d_ff, cfg.n_heads

    def param(*shape: int, std: float = 0.02) -> Tensor:
        return Tensor((rng.standard_normal(shape) * std).astype(np.float32), requires_grad=True)

    def act(*shape: int) -> Tensor:
        return Tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)

    x = act(cfg.batch_size, cfg.seq_len, E)
    gamma, beta = param(E, std=1.0), param(E)
    ops: dict[str, Callable[[], Any]] = {"layer_norm": lambda: F.layer_norm(x, E, gamma, beta)}
    for name, (k, n, activation) in {
        "linear qkv": (E, 3 * E, "none"),
        "linear out_proj": (E, E, "none"),
        "linear mlp.0 + gelu": (E, Fd, "gelu_tanh"),
        "linear mlp.2": (Fd, E, "none"),
    }.items():
        xi = act(M, k)
        w, b = param(n, k), param(n)

        def linear(xi=xi, w=w, b=b, activation=activation) -> Tensor:
            return F.linear_activation(xi, w, b, activation)

        ops[name] = linear
    qkv = act(cfg.batch_size, cfg.seq_len, 3 * E)

    def attention() -> Tensor:
        return F.multi_head_attention_core(qkv, None, None, H, is_causal=True, dropout_p=cfg.dropout)[0]

    ops["attention (causal)"] = attention
    return ops


def time_ops(ops: dict, threads: list[int], repeats: int, rounds: int,
             statistic: Callable[[list[float]], float] = statistics.median,
             flush_bytes: int = 0) -> dict[str, dict[int, float]]:
    """Seconds of each op's forward and backward (keys ``"<op> forward"``, ``"<op> backward"``)
    per thread count, the thread counts alternating in blocks: ``statistic`` (the median, or
    the minimum on a shared machine) of the calls' wall-clock times. ``flush_bytes``: a
    buffer that large is written before each forward and each backward (untimed), so their
    operands come from memory, as in a training step whose activations outgrow the caches."""
    import seqlab

    times: dict[str, dict[int, list[float]]] = {}
    flush = np.empty(flush_bytes // 4, dtype=np.float32)
    for _ in range(rounds):
        for t in threads:
            seqlab.set_num_threads(t)
            for name, forward in ops.items():
                fw = times.setdefault(f"{name} forward", {}).setdefault(t, [])
                bw = times.setdefault(f"{name} backward", {}).setdefault(t, [])
                for i in range(repeats + 1):  # the first call of a block untimed
                    flush.fill(1.0)
                    t0 = time.perf_counter()
                    out = forward()
                    t1 = time.perf_counter()
                    g = np.ones_like(out.data)
                    flush.fill(2.0)
                    t2 = time.perf_counter()
                    out._backward(g)
                    t3 = time.perf_counter()
                    if i:
                        fw.append(t1 - t0)
                        bw.append(t3 - t2)
    return {name: {t: statistic(v) for t, v in per.items()} for name, per in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="small")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per block")
    parser.add_argument("--rounds", type=int, default=3, help="blocks per thread count")
    parser.add_argument("--min", action="store_true",
                        help="the fastest call of each instead of the median: a guide on a shared machine")
    parser.add_argument("--flush-mb", type=int, default=0,
                        help="write a buffer of this many MiB before each call (operands from memory)")
    parser.add_argument("--json", help="also write the times here")
    args = parser.parse_args()
    from seqlab.models.code_lm.config import preset_config

    cfg = preset_config(args.preset)
    stat = "minima" if args.min else "medians"
    medians = time_ops(block_ops(cfg), args.threads, args.repeats, args.rounds,
                       min if args.min else statistics.median, args.flush_mb << 20)
    print(machine_description())
    print(f"preset {args.preset}: batch {cfg.batch_size} x {cfg.seq_len}, d_model {cfg.d_model}, "
          f"{cfg.n_heads} heads, d_ff {cfg.d_ff}, dropout {cfg.dropout}; {stat} of {args.rounds} x "
          f"{args.repeats} calls, wall clock, thread counts in alternating blocks"
          + (f", caches flushed ({args.flush_mb} MiB) before each call" if args.flush_mb else "") + "\n")
    first, last = args.threads[0], args.threads[-1]
    rows = [[name] + [f"{1e3 * per[t]:.3f}" for t in args.threads] + [f"{per[first] / per[last]:.2f}x"]
            for name, per in medians.items()]
    print(markdown_table(["op"] + [f"ms @ {t} thr" for t in args.threads] + [f"{first} -> {last}"], rows))
    if args.json:
        with open(args.json, "w") as f:
            ms = {n: {str(t): 1e3 * s for t, s in per.items()} for n, per in medians.items()}
            json.dump({"preset": args.preset, "statistic": stat, "ms": ms}, f, indent=1)


if __name__ == "__main__":
    main()
