"""Code language model: seqlab's GPT against its PyTorch twin (nanoGPT-style), same weights.

Measures, for each library in its own process (a library's spinning threads never take
the cores the other needs):

* training tokens per second (forward, cross-entropy, backward, gradient clipping, AdamW;
  seqlab's loss is ``GPT.loss``, the tied output layer fused with the cross-entropy, as the
  recipe trains; ``seqlab-unfused`` is the same model with the (B, T, V) logits then
  ``cross_entropy``)
  at each thread count, with achieved GFLOP/s (6 N + 12 L T E per token, nanoGPT's
  estimate) beside the machine's ceiling (DESIGN.md: about 120 GFLOP/s per core);
* generation tokens per second at batch 1, greedy, each library with its own key/value
  cache, after a prompt of ``--prompt`` tokens;
* the peak resident memory of the process after the training steps;
* with ``--breakdown``, where seqlab's training step spends its time at each thread count
  (a cProfile of the timed steps: each ``_core`` kernel, and the rest, Python and NumPy
  outside the kernels) and each part's speedup from the first to the last thread count:
  the parts that do not scale.

``--precision bf16`` trains seqlab with bf16 GEMMs (fp32 accumulation, fp32 master weights)
and times PyTorch twice: in fp32 (``torch``) and under ``torch.autocast("cpu",
dtype=torch.bfloat16)`` (``torch-autocast``, forward and loss inside, as its docs advise).
Generation stays fp32 on both sides.

    python benchmarks/bench_code_lm.py                       # preset small, 1 and 2 threads
    python benchmarks/bench_code_lm.py --preset original --threads 2
    python benchmarks/bench_code_lm.py --preset tiny --steps 2 --gen 8   # a quick check that it runs
    python benchmarks/bench_code_lm.py --precision bf16 --threads 2   # seqlab bf16 vs torch fp32 and autocast
    python benchmarks/bench_code_lm.py --libraries seqlab --threads 1 2 --breakdown
    python benchmarks/bench_code_lm.py --libraries seqlab seqlab-unfused torch --threads 1 --cpu-time
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harness import machine_description, markdown_table, median_seconds

CEILING_GFLOPS_PER_CORE = 120.0
LIBRARIES = ["seqlab", "seqlab-unfused", "torch", "torch-autocast"]


def flops_per_token(cfg, n_params: int) -> float:
    non_embedding = n_params - cfg.max_len * cfg.d_model  # the tied output layer's GEMM stays counted
    return 6.0 * non_embedding + 12.0 * cfg.n_layers * cfg.seq_len * cfg.d_model


def kernel_breakdown(step, batches: list) -> dict[str, float]:
    """Seconds per training step in each ``_core`` kernel, and ``"outside kernels"`` for the
    rest, from a cProfile of ``step`` over ``batches``."""
    profile = cProfile.Profile()
    profile.enable()
    for b in batches:
        step(b)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    parts: dict[str, float] = {}
    total = 0.0
    for (_, _, name), (_, _, tottime, _, _) in stats.items():
        total += tottime
        if name.startswith("<built-in method seqlab._core."):
            kernel = name[len("<built-in method seqlab._core.") : -1]
            parts[kernel] = parts.get(kernel, 0.0) + tottime / len(batches)
    parts["outside kernels"] = total / len(batches) - sum(parts.values())
    return parts


def measure(step, batches: list, generate, gen: int, params: int, breakdown: bool = False,
            cpu_time: bool = False) -> dict:
    """Median seconds of a training step (the first two batches untimed), the process's peak
    memory after them, and generation speed (``generate(n)`` returns the tokens it made;
    a 4-token call first, untimed). ``breakdown``: the timed steps run again under cProfile
    (:func:`kernel_breakdown`). ``cpu_time``: steps timed by the process's CPU time
    (``time.process_time``), a guide on a shared machine at 1 thread."""
    feed = iter(batches)
    clock = time.process_time if cpu_time else time.perf_counter
    step_seconds = median_seconds(lambda: step(next(feed)), repeats=len(batches) - 2, warmup=2, clock=clock)
    parts = kernel_breakdown(step, batches[2:]) if breakdown else None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    generate(4)
    t0 = time.perf_counter()
    made = generate(gen)
    gen_seconds = time.perf_counter() - t0
    return {"step_seconds": step_seconds, "peak_bytes": peak, "gen_tokens": made, "gen_seconds": gen_seconds,
            "params": params, "breakdown": parts}


def run_seqlab(cfg, threads: int, steps: int, gen: int, prompt: int, breakdown: bool = False,
               cpu_time: bool = False, fused: bool = True) -> dict:
    """``fused``: the loss of :meth:`GPT.loss` (output layer and cross-entropy in one op, as
    the recipe trains); otherwise the logits of ``model(ids)`` then ``cross_entropy``."""
    import seqlab
    from seqlab.functional import cross_entropy
    from seqlab.models.code_lm import GPT, generate_ids
    from seqlab.nn.utils import clip_grad_norm_
    from seqlab.optim import AdamW

    seqlab.set_num_threads(threads)
    seqlab.manual_seed(0)
    model = GPT(cfg)
    params = list(model.parameters())
    opt = AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, cfg.vocab_size, (cfg.batch_size, cfg.seq_len + 1)) for _ in range(steps + 2)]

    def step(b: np.ndarray) -> None:
        opt.zero_grad()
        if fused:
            loss = model.loss(b[:, :-1], b[:, 1:])
        else:
            loss = cross_entropy(model(b[:, :-1]), b[:, 1:])
        loss.backward()
        clip_grad_norm_(params, cfg.clip_grad_norm)
        opt.step()

    ids = rng.integers(1, cfg.vocab_size, prompt)

    def generate(n: int) -> int:
        return len(generate_ids(model, ids, n, temperature=0.0, end_id=None)[0])

    return measure(step, batches, generate, gen, model.num_parameters(), breakdown, cpu_time)


def run_torch(cfg, threads: int, steps: int, gen: int, prompt: int, autocast: bool = False,
              cpu_time: bool = False) -> dict:
    import torch

    import seqlab
    from seqlab.models.code_lm import GPT
    from torch_twins import TorchGPT

    torch.set_num_threads(threads)
    seqlab.manual_seed(0)
    model = TorchGPT(GPT(cfg))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    rng = np.random.default_rng(0)
    batches = [
        torch.from_numpy(rng.integers(0, cfg.vocab_size, (cfg.batch_size, cfg.seq_len + 1)))
        for _ in range(steps + 2)
    ]

    def step(b: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits, _ = model(b[:, :-1])
            logits = logits.reshape(-1, logits.shape[-1])
            loss = torch.nn.functional.cross_entropy(logits, b[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
        opt.step()

    ids = torch.from_numpy(rng.integers(1, cfg.vocab_size, (1, prompt)))

    @torch.no_grad()
    def generate(n: int) -> int:  # fp32, as seqlab's generation
        model.eval()
        logits, past = model(ids)
        out = []
        for _ in range(n):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            out.append(int(nxt))
            if ids.shape[1] + len(out) >= cfg.max_len:
                break
            logits, past = model(nxt, past)
        return len(out)

    n_params = sum(p.numel() for p in model.parameters())
    return measure(step, batches, generate, gen, n_params, cpu_time=cpu_time)


def worker(args: argparse.Namespace) -> None:
    from seqlab.models.code_lm import preset_config

    cfg = preset_config(args.preset, precision=args.precision)
    sizes = (cfg, args.worker_threads, args.steps, args.gen, args.prompt)
    if args.worker.startswith("seqlab"):
        result = run_seqlab(*sizes, breakdown=args.breakdown, cpu_time=args.cpu_time,
                            fused=args.worker == "seqlab")
    else:
        result = run_torch(*sizes, autocast=args.worker == "torch-autocast", cpu_time=args.cpu_time)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (after 2 untimed)")
    parser.add_argument("--gen", type=int, default=128, help="generated tokens")
    parser.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="seqlab's GEMM precision; bf16 also times torch under bf16 autocast")
    parser.add_argument("--libraries", nargs="+", default=None, choices=LIBRARIES,
                        help="default: seqlab and torch, plus torch-autocast with --precision bf16")
    parser.add_argument(
        "--breakdown", action="store_true", help="seqlab's step time per kernel and thread count (cProfile)"
    )
    parser.add_argument(
        "--cpu-time", action="store_true",
        help="time steps by process CPU time (a guide on a shared machine; meaningful at 1 thread)",
    )
    parser.add_argument("--worker", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--worker-threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from seqlab.models.code_lm import preset_config

    if args.libraries is None:
        args.libraries = ["seqlab", "torch"] + (["torch-autocast"] if args.precision == "bf16" else [])
    cfg = preset_config(args.preset, precision=args.precision)
    print(machine_description())
    print(
        f"preset {args.preset}: d_model {cfg.d_model}, {cfg.n_layers} layers, {cfg.n_heads} heads, vocab "
        f"{cfg.vocab_size}, batch {cfg.batch_size} x seq {cfg.seq_len}; seqlab GEMMs in {args.precision}",
        flush=True,
    )
    results: dict[tuple[str, int], dict] = {}
    for threads in args.threads:
        for lib in args.libraries:
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--preset",
                args.preset,
                "--steps",
                str(args.steps),
                "--gen",
                str(args.gen),
                "--prompt",
                str(args.prompt),
                "--precision",
                args.precision,
                "--worker",
                lib,
                "--worker-threads",
                str(threads),
            ] + (["--breakdown"] if args.breakdown else []) + (["--cpu-time"] if args.cpu_time else [])
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[(lib, threads)] = json.loads(done.stdout.strip().splitlines()[-1])
            print(lib, threads, results[(lib, threads)], flush=True)
    tokens = cfg.batch_size * cfg.seq_len
    rows = []
    for (lib, threads), r in results.items():
        tok_s = tokens / r["step_seconds"]
        gflops = tok_s * flops_per_token(cfg, r["params"]) / 1e9
        rows.append(
            (
                lib,
                threads,
                f"{tok_s:,.0f}",
                f"{gflops:.1f} / {CEILING_GFLOPS_PER_CORE * threads:.0f}",
                f"{r['gen_tokens'] / r['gen_seconds']:,.0f}",
                f"{r['peak_bytes'] / 2**20:.0f}",
            )
        )
    print()
    print(
        markdown_table(
            [
                "library",
                "threads",
                "training tokens/s",
                "GFLOP/s / ceiling",
                "generation tokens/s (batch 1, KV cache)",
                "peak MiB",
            ],
            rows,
        )
    )
    ratios = []
    for threads in args.threads:
        for peer in ("torch", "torch-autocast", "seqlab-unfused"):
            if ("seqlab", threads) in results and (peer, threads) in results:
                s, t = results[("seqlab", threads)], results[(peer, threads)]
                ratios.append(
                    (
                        threads,
                        f"seqlab {args.precision} / {peer}",
                        f"{t['step_seconds'] / s['step_seconds']:.2f}x",
                        f"{(s['gen_tokens'] / s['gen_seconds']) / (t['gen_tokens'] / t['gen_seconds']):.2f}x",
                    )
                )
    if ratios:
        print()
        print(markdown_table(["threads", "pair", "training speed ratio", "generation speed ratio"], ratios))
    for lib in args.libraries:
        if (lib, 1) in results and (lib, 2) in results:
            print(
                f"{lib}: 1 -> 2 threads training speedup "
                f"{results[(lib, 1)]['step_seconds'] / results[(lib, 2)]['step_seconds']:.2f}x"
            )


    if args.breakdown:
        print_breakdown({t: r["breakdown"] for (lib, t), r in results.items() if lib == "seqlab"})


def print_breakdown(parts: dict[int, dict[str, float]]) -> None:
    """Milliseconds per training step of each part at each thread count, its share at the
    first, and its speedup from the first thread count to the last, largest parts first."""
    counts = sorted(parts)
    if not counts:
        return
    first, last = parts[counts[0]], parts[counts[-1]]
    total = sum(first.values())
    rows = []
    for name in sorted(first, key=first.get, reverse=True):  # type: ignore[arg-type]
        if first[name] < 0.005 * total:
            continue
        speedup = first[name] / last[name] if last.get(name) else float("nan")
        rows.append(
            [name]
            + [f"{1e3 * parts[t].get(name, 0.0):.1f}" for t in counts]
            + [f"{100 * first[name] / total:.0f}%", f"{speedup:.2f}x"]
        )
    print()
    print(
        markdown_table(
            ["part of the step"]
            + [f"ms at {t} thread{'s' if t > 1 else ''}" for t in counts]
            + [f"share at {counts[0]}", f"speedup {counts[0]} -> {counts[-1]}"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
