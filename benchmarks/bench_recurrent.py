"""One training step of LSTM and GRU layers: seqlab against PyTorch CPU, same process.

A step is forward, the loss ``mean((output - target)^2)``, backward (the
parameters' gradients; the input is data and needs none) and an optimizer step
(``--optimizer``, Adam by default; ``none`` for none). Both libraries get the same
shapes, weights, inputs and thread count; each is timed in its own block of repeats
(``--interleaved`` alternates them instead). Prints the
median time of each, the ratio and the achieved GFLOP/s of the step's GEMM work:
forward 2*B*T*G*H*(C+H), backward 2*B*T*G*H*(C+2H) (dW_ih, dW_hh and dh).

    python benchmarks/bench_recurrent.py                 # all rows, 1 and 2 threads
    python benchmarks/bench_recurrent.py --threads 1 --rows 0 1 --repeats 5
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

import seqlab
import seqlab.nn
from harness import interleaved_medians, machine_description, markdown_table, median_seconds

ROWS = [(16, 50, 300, 64), (16, 50, 300, 256), (16, 50, 300, 512), (64, 100, 128, 128)]
GATES = {"LSTM": 4, "GRU": 3}


def step_flops(cell: str, batch: int, seq: int, inp: int, hidden: int) -> float:
    """GEMM flops of forward + backward without the input gradient."""
    gh = GATES[cell] * hidden
    return 2.0 * batch * seq * gh * ((inp + hidden) + (inp + 2 * hidden))


def seqlab_step(cell: str, x: np.ndarray, target: np.ndarray, state: dict,
                optimizer: str | None) -> Callable[[], None]:
    module = getattr(seqlab.nn, cell)(x.shape[2], target.shape[2], batch_first=True)
    module.load_state_dict(state)
    xs = seqlab.tensor(x)
    opt = None
    if optimizer is not None:
        opt = getattr(seqlab.optim, optimizer)(module.parameters(), lr=1e-3)

    def step() -> None:
        if opt is not None:
            opt.zero_grad()
        else:
            module.zero_grad()
        out, _ = module(xs)
        diff = out - target
        loss = (diff * diff).mean()
        loss.backward()
        if opt is not None:
            opt.step()

    return step


def torch_step(torch, cell: str, x: np.ndarray, target: np.ndarray, state: dict,
               optimizer: str | None) -> Callable[[], None]:
    module = getattr(torch.nn, cell)(x.shape[2], target.shape[2], batch_first=True)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    xt = torch.from_numpy(x)
    tt = torch.from_numpy(target)
    opt = None if optimizer is None else getattr(torch.optim, optimizer)(
        module.parameters(), lr=1e-3)

    def step() -> None:
        (opt or module).zero_grad(set_to_none=False)
        out, _ = module(xt)
        loss = ((out - tt) ** 2).mean()
        loss.backward()
        if opt is not None:
            opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, nargs="+", default=list(range(len(ROWS))),
                        help=f"indices into {ROWS}")
    parser.add_argument("--cells", nargs="+", default=["LSTM", "GRU"], choices=list(GATES))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--optimizer", default="Adam",
                        help="optimizer class name (Adam, AdamW, SGD) or 'none'")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--interleaved", action="store_true",
                        help="alternate the two libraries' calls instead of timing each in its own "
                             "block (their idle threads then spin on the core the other one needs)")
    args = parser.parse_args()
    optimizer = None if args.optimizer.lower() == "none" else args.optimizer

    import torch

    rng = np.random.default_rng(0)
    print(machine_description())
    table = []
    print(f"{'cell':5} {'thr':>3} {'B':>3} {'T':>4} {'C':>4} {'H':>4} | {'seqlab ms':>9} "
          f"{'torch ms':>9} {'speedup':>7} | {'seqlab GF/s':>11} {'torch GF/s':>10}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        seqlab.set_num_threads(threads)
        for cell in args.cells:
            for i in args.rows:
                batch, seq, inp, hidden = ROWS[i]
                x = rng.standard_normal((batch, seq, inp), dtype=np.float32)
                target = rng.standard_normal((batch, seq, hidden), dtype=np.float32)
                state = getattr(seqlab.nn, cell)(inp, hidden).state_dict()
                steps = [seqlab_step(cell, x, target, state, optimizer),
                         torch_step(torch, cell, x, target, state, optimizer)]
                if args.interleaved:
                    ts, tt = interleaved_medians(steps, repeats=args.repeats)
                else:
                    ts, tt = (median_seconds(step, repeats=args.repeats) for step in steps)
                flops = step_flops(cell, batch, seq, inp, hidden)
                table.append((cell, threads, f"{batch}, {seq}, {inp}, {hidden}", ts * 1e3, tt * 1e3,
                              tt / ts, flops / ts / 1e9, flops / tt / 1e9))
                print(f"{cell:5} {threads:>3} {batch:>3} {seq:>4} {inp:>4} {hidden:>4} | "
                      f"{ts * 1e3:9.2f} {tt * 1e3:9.2f} {tt / ts:7.2f} | "
                      f"{flops / ts / 1e9:11.1f} {flops / tt / 1e9:10.1f}", flush=True)
    if args.markdown:
        print()
        print(markdown_table(["cell", "threads", "B, T, C, H", "seqlab ms", "torch ms",
                              "speedup", "seqlab GFLOP/s", "torch GFLOP/s"], table))


if __name__ == "__main__":
    main()
