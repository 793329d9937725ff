"""Attention and a transformer training step: seqlab against PyTorch CPU, same process.

Rows:

* attention forward + backward (the gradients of q, k and v) at B=4, H=8, D=64,
  T in 128, 512, 2048, causal and not: ``seqlab.functional.scaled_dot_product_attention``
  against ``torch.nn.functional.scaled_dot_product_attention`` (PyTorch's own CPU flash
  kernel). GFLOP/s counts the useful GEMM work: forward 4*B*H*T^2*D, backward twice that
  (12*B*H*T^2*D in all), halved when causal; recomputation is not counted.
* one training step of a transformer block at d_model=256, 8 heads, T=128, batch 32:
  ``TransformerEncoderLayer(256, 8, 1024, dropout=0)`` (post-LN and pre-LN) and the
  pre-LN causal decoder block against the same layers of torch (loss mean(y^2), backward,
  Adam step).

Both libraries get the same shapes, inputs, weights and thread count; each is timed in
its own block of repeats after a pause (medians), seqlab first: PyTorch's OpenMP threads
spin for a while after each call and, on a machine with as many threads as cores, would
steal the second core from whatever runs next if the calls alternated.

Peak memory: each case runs again in a fresh subprocess (glibc told to map every
allocation of 64 KiB or more separately, so freed buffers leave the resident set) that
sets up the inputs and model, runs a warm step, resets the resident-set high-water mark
and runs one more step: the peak minus the resident set before the step is the extra
memory a step needs at its peak (activations, kernel caches, gradients); see
``peak_step_bytes``. seqlab's attention also reports its kernel workspace (probabilities
on the plain path, one logsumexp per row on the flash path).

    python benchmarks/bench_attention.py                    # every row, all cores
    python benchmarks/bench_attention.py --threads 1 --repeats 5 --no-memory
    python benchmarks/bench_attention.py --threads 1 --cpu-time --no-memory --seq 128 512
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

import seqlab
import seqlab.functional as SF
import seqlab.nn as snn
import seqlab.optim
from harness import machine_description, markdown_table, median_seconds

B, H, D = 4, 8, 64
BLOCK = dict(batch=32, seq=128, d_model=256, heads=8, ff=1024)
BLOCK_KINDS = ["encoder post-LN", "encoder pre-LN", "decoder block (causal)"]


def attention_flops(T: int, causal: bool) -> float:
    return 12.0 * B * H * T * T * D * (0.5 if causal else 1.0)


def attention_cases(torch, T: int, causal: bool) -> tuple[Callable[[], None], Callable[[], None], int]:
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((B, H, T, D), dtype=np.float32) for _ in range(3))
    g = rng.standard_normal((B, H, T, D), dtype=np.float32)
    qs, ks, vs = (seqlab.tensor(a, requires_grad=True) for a in (q, k, v))
    qt, kt, vt = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    gt = torch.tensor(g)

    def ours() -> None:
        for t in (qs, ks, vs):
            t.grad = None
        SF.scaled_dot_product_attention(qs, ks, vs, is_causal=causal).backward(g)

    def theirs() -> None:
        for t in (qt, kt, vt):
            t.grad = None
        torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=causal).backward(gt)

    out = np.empty((B, H, T, D), dtype=np.float32)
    flash = T >= SF.get_attention_flash_threshold()
    _, cache = seqlab._core.attention_forward(q, k, v, out, causal=causal, flash=flash)
    return ours, theirs, int(cache.workspace_bytes)


def torch_decoder_block(torch, d: int, heads: int, ff: int):
    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln_1 = torch.nn.LayerNorm(d)
            self.attn = torch.nn.MultiheadAttention(d, heads, batch_first=True)
            self.ln_2 = torch.nn.LayerNorm(d)
            self.mlp = torch.nn.Sequential(
                torch.nn.Linear(d, ff), torch.nn.GELU(approximate="tanh"), torch.nn.Linear(ff, d)
            )

        def forward(self, x, mask):
            h = self.ln_1(x)
            a, _ = self.attn(h, h, h, attn_mask=mask, need_weights=False, is_causal=True)
            x = x + a
            return x + self.mlp(self.ln_2(x))

    return Block()


def block_cases(torch, kind: str) -> tuple[Callable[[], None], Callable[[], None]]:
    b, t, d, h, ff = (BLOCK[k] for k in ("batch", "seq", "d_model", "heads", "ff"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, t, d), dtype=np.float32)
    if kind.startswith("encoder"):
        pre = kind == "encoder pre-LN"
        ours_m = snn.TransformerEncoderLayer(d, h, ff, dropout=0.0, norm_first=pre)
        theirs_m = torch.nn.TransformerEncoderLayer(d, h, ff, dropout=0.0, batch_first=True, norm_first=pre)
        mask = None
    else:
        ours_m = snn.TransformerDecoderBlock(d, h, ff)
        theirs_m = torch_decoder_block(torch, d, h, ff)
        mask = torch.nn.Transformer.generate_square_subsequent_mask(t)
    theirs_m.load_state_dict({k: torch.tensor(v) for k, v in ours_m.state_dict().items()})
    opt_s = seqlab.optim.Adam(ours_m.parameters(), lr=1e-4)
    opt_t = torch.optim.Adam(theirs_m.parameters(), lr=1e-4)
    xs, xt = seqlab.tensor(x), torch.tensor(x)

    def ours() -> None:
        opt_s.zero_grad()
        y = ours_m(xs)
        (y * y).mean().backward()
        opt_s.step()

    def theirs() -> None:
        opt_t.zero_grad(set_to_none=False)
        y = theirs_m(xt) if mask is None else theirs_m(xt, mask)
        (y * y).mean().backward()
        opt_t.step()

    return ours, theirs


def blocked_medians(fns: list[Callable[[], None]], repeats: int, warmup: int = 2,
                    clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Median seconds of each function, each timed in its own block after a short pause."""
    out = []
    for fn in fns:
        time.sleep(0.5)
        out.append(median_seconds(fn, repeats=repeats, warmup=warmup, clock=clock))
    return out


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_step_bytes(fn: Callable[[], None]) -> int:
    """Peak resident memory one step adds over what the set-up process holds (fresh process).

    After a warm step (lazy initialisation) the freed heap is returned to the system
    (glibc ``malloc_trim``), then the resident-set high-water mark is reset just before
    the step (Linux: writing 5 to /proc/self/clear_refs resets VmHWM); the result is
    VmHWM after the step minus VmRSS before it. Without that interface it falls back to
    ru_maxrss (which may include the import peak). Both libraries' steps start by dropping
    the previous gradients, so this is the peak over the steady state between steps.
    """
    fn()  # one-time lazy initialisation of either library is not counted
    SF.clear_attention_workspace()  # seqlab's buffers kept between steps count in the step
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give the warm step's freed memory back
    except (OSError, AttributeError):
        pass
    base = _status_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        fn()
        peak = _status_kib("VmHWM")
    except OSError:
        fn()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(0, peak - base) * 1024


def memory_child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    seqlab.set_num_threads(args.threads)
    lib, case = args.memory_case
    if case.startswith("attn"):
        _, t, c = case.split(":")
        ours, theirs, _ = attention_cases(torch, int(t), c == "1")
    else:
        ours, theirs = block_cases(torch, case)
    print(json.dumps(peak_step_bytes(ours if lib == "seqlab" else theirs)))


def measure_memory(case: str, threads: int) -> tuple[float, float]:
    out = []
    for lib in ("seqlab", "torch"):
        # Every allocation of 64 KiB or more gets its own mapping, returned on free, so the
        # resident set follows the live buffers of both libraries.
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
        res = subprocess.run(
            [sys.executable, __file__, "--threads", str(threads), "--memory-case", lib, case],
            capture_output=True, text=True, check=True, env=env,
        )
        out.append(json.loads(res.stdout.strip().splitlines()[-1]) / 2**20)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=seqlab.get_num_threads())
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--only", choices=["attention", "block"], default=None)
    parser.add_argument("--seq", type=int, nargs="+", default=[128, 512, 2048],
                        help="attention rows: sequence lengths (default 128 512 2048)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="median process CPU time instead of wall time (with --threads 1: a "
                        "comparison that other jobs on the machine do not inflate)")
    parser.add_argument("--memory-case", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_case:
        memory_child(args)
        return
    import torch

    torch.set_num_threads(args.threads)
    seqlab.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"Machine: {machine_description()}; threads: {args.threads}; "
          f"flash threshold: {SF.get_attention_flash_threshold()} keys; "
          f"{'CPU' if args.cpu_time else 'wall'} time; load average {os.getloadavg()[0]:.1f}\n")
    if args.only in (None, "attention"):
        rows = []
        for T, causal in [(T, c) for T in args.seq for c in (False, True)]:
            ours, theirs, workspace = attention_cases(torch, T, causal)
            reps = max(3, args.repeats // (4 if T >= 2048 else 1))
            t_s, t_t = blocked_medians([ours, theirs], repeats=reps, clock=clock)
            flops = attention_flops(T, causal)
            row = [T, "yes" if causal else "no", t_s * 1e3, t_t * 1e3, t_t / t_s, flops / t_s / 1e9,
                   flops / t_t / 1e9, workspace / 2**20]
            if not args.no_memory:
                row += list(measure_memory(f"attn:{T}:{int(causal)}", args.threads))
            rows.append(row)
            print(f"  T={T} causal={causal}: seqlab {t_s * 1e3:.2f} ms, torch {t_t * 1e3:.2f} ms", flush=True)
        header = ["T", "causal", "seqlab ms", "torch ms", "speedup", "seqlab GFLOP/s", "torch GFLOP/s",
                  "seqlab workspace MiB"]
        if not args.no_memory:
            header += ["seqlab peak MiB", "torch peak MiB"]
        print(f"\nAttention forward+backward, B={B}, H={H}, D={D}\n")
        print(markdown_table(header, rows))
    if args.only in (None, "block"):
        rows = []
        for kind in BLOCK_KINDS:
            ours, theirs = block_cases(torch, kind)
            t_s, t_t = blocked_medians([ours, theirs], repeats=args.repeats, clock=clock)
            row = [kind, t_s * 1e3, t_t * 1e3, t_t / t_s]
            if not args.no_memory:
                row += list(measure_memory(kind, args.threads))
            rows.append(row)
            print(f"  {kind}: seqlab {t_s * 1e3:.2f} ms, torch {t_t * 1e3:.2f} ms", flush=True)
        header = ["block", "seqlab ms", "torch ms", "speedup"]
        if not args.no_memory:
            header += ["seqlab peak MiB", "torch peak MiB"]
        b, t, d, h, ff = (BLOCK[k] for k in ("batch", "seq", "d_model", "heads", "ff"))
        print(f"\nTraining step (forward, backward, Adam), batch {b}, T={t}, d_model={d}, {h} heads, "
              f"ff={ff}\n")
        print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
