"""One training step of the autoregressive decoder: seqlab's fused op against a PyTorch
loop over timesteps, same process, same threads.

A step is: sample the teacher-forcing mask (ratio 0.5, per row and step), decoder
forward over T steps (LSTM or GRU cell, optionally 8-head attention over encoder
states that require grad), the masked hybrid loss (0.9 cosine + 0.1 MSE), backward
into every parameter, h0 (and c0) and the encoder states. PyTorch runs the same model
as ``LSTMCell``/``GRUCell`` + ``MultiheadAttention`` + ``Linear`` in a Python loop,
with the same weights; with attention also a hand-written PyTorch variant that
projects keys and values once per sequence (``MultiheadAttention`` re-projects them
every step). Each is timed in its own block of repeats, the blocks alternating twice
(``--interleaved``: call by call); medians, the ratios, and the
achieved GFLOP/s of the step's matrix work, counted as 3x the forward's (see
``step_flops``), beside the machine's ceiling in DESIGN.md (about 120 GFLOP/s per core
on large sgemm, 45-55 at M = 16).

    python benchmarks/bench_decoder.py                       # B=32 T=50 E=300 H=256 S=50
    python benchmarks/bench_decoder.py --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

import seqlab
from harness import block_medians, interleaved_medians, machine_description, markdown_table

GATES = {"lstm": 4, "gru": 3}


def step_flops(cell: str, B: int, T: int, E: int, H: int, S: int, attention: bool,
               ratio: float) -> float:
    """Matrix flops of a training step, taken as 3x the forward's (backward ~ 2x forward).

    Forward: input, recurrent and output projections; the fed-back share (1 - ratio) of
    rows adds a prediction and its input projection per step; attention adds the key
    and value projections (B*S rows), query and output projections (B*T rows), scores
    and context.
    """
    gh = GATES[cell] * H
    z = 2 * H if attention else H
    bt = B * T
    fwd = 2.0 * bt * (E * gh + H * gh + z * E) + 2.0 * (1.0 - ratio) * bt * (z * E + E * gh)
    if attention:
        fwd += 4.0 * B * S * H * H + 4.0 * bt * H * H + 4.0 * bt * S * H
    return 3.0 * fwd


def seqlab_step(dec: seqlab.nn.RecurrentDecoder, targets: np.ndarray, lengths: np.ndarray,
                h0: np.ndarray, memory: np.ndarray | None, ratio: float) -> Callable[[], float]:
    lstm = dec.cell == "lstm"

    def step() -> float:
        dec.zero_grad()
        h = seqlab.tensor(h0, requires_grad=True)
        c = seqlab.tensor(h0, requires_grad=True) if lstm else None
        mem = None if memory is None else seqlab.tensor(memory, requires_grad=True)
        mem_lengths = None if memory is None else np.minimum(lengths, memory.shape[1])
        pred = dec(targets, h, c, teacher_forcing=ratio, memory=mem, memory_lengths=mem_lengths)
        loss = seqlab.losses.cosine_mse_loss(pred, targets, lengths)
        loss.backward()
        return loss.item()

    return step


def torch_step(torch, dec: seqlab.nn.RecurrentDecoder, targets: np.ndarray, lengths: np.ndarray,
               h0: np.ndarray, memory: np.ndarray | None, ratio: float,
               kv_once: bool = False) -> Callable[[], float]:
    """The PyTorch loop (``torch_twins.TorchDecoder``). ``kv_once``: project keys and
    values once per sequence instead of calling ``MultiheadAttention`` per step."""
    from torch_twins import hybrid_loss, torch_decoder

    model = torch_decoder(dec, kv_once)
    y = torch.from_numpy(targets)
    batch, steps = targets.shape[:2]
    mask = torch.arange(steps)[None, :] < torch.from_numpy(lengths)[:, None]
    kpm = None
    if memory is not None:
        kpm = torch.arange(memory.shape[1])[None, :] >= torch.from_numpy(lengths)[:, None]
    lstm = dec.cell == "lstm"

    def step() -> float:
        model.zero_grad(set_to_none=True)
        h = torch.from_numpy(h0).requires_grad_()
        c = torch.from_numpy(h0).requires_grad_() if lstm else None
        mem = None if memory is None else torch.from_numpy(memory).requires_grad_()
        tf = torch.rand(batch, steps) < ratio
        loss = hybrid_loss(model(y, h, c, tf, mem, kpm), y, mask)
        loss.backward()
        return loss.item()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=["lstm", "gru"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--features", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--memory-steps", type=int, default=50)
    parser.add_argument("--ratio", type=float, default=0.5, help="teacher-forcing ratio")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--interleaved", action="store_true",
                        help="alternate the libraries call by call instead of timing each in its own block")
    args = parser.parse_args()

    import torch

    rng = np.random.default_rng(0)
    B, T, E, H, S = args.batch, args.steps, args.features, args.hidden, args.memory_steps
    targets = rng.standard_normal((B, T, E), dtype=np.float32)
    lengths = rng.integers(T // 2, T + 1, size=B)
    lengths[0] = T
    h0 = rng.standard_normal((B, H), dtype=np.float32) * np.float32(0.1)
    memory = rng.standard_normal((B, S, H), dtype=np.float32)
    print(machine_description())
    print(f"B={B} T={T} E={E} H={H} S={S} teacher-forcing ratio {args.ratio}")
    print(f"{'cell':5} {'attention':>9} {'thr':>3} | {'seqlab ms':>9} {'torch ms':>9} {'speedup':>7}"
          f" | {'kv-once ms':>9} {'speedup':>7} | {'seqlab GF/s':>11}")
    table = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        seqlab.set_num_threads(threads)
        for cell in args.cells:
            for attention in (False, True):
                dec = seqlab.nn.RecurrentDecoder(E, H, cell=cell, init="orthogonal",
                                                 attention_dim=H if attention else None, num_heads=8)
                mem = memory if attention else None
                steps = [seqlab_step(dec, targets, lengths, h0, mem, args.ratio),
                         torch_step(torch, dec, targets, lengths, h0, mem, args.ratio)]
                if attention:
                    steps.append(torch_step(torch, dec, targets, lengths, h0, mem, args.ratio,
                                            kv_once=True))
                times = (interleaved_medians(steps, repeats=args.repeats, warmup=2) if args.interleaved
                         else block_medians(steps, repeats=args.repeats, rounds=2))
                ts, tt = times[0], times[1]
                tk = times[2] if attention else float("nan")
                label = "8 heads" if attention else "none"
                flops = step_flops(cell, B, T, E, H, S, attention, args.ratio)
                table.append((cell, label, threads, ts * 1e3, tt * 1e3, tt / ts, tk * 1e3, tk / ts,
                              flops / ts / 1e9))
                print(f"{cell:5} {label:>9} {threads:>3} | {ts * 1e3:9.2f} {tt * 1e3:9.2f} "
                      f"{tt / ts:7.2f} | {tk * 1e3:9.2f} {tk / ts:7.2f} | {flops / ts / 1e9:11.1f}",
                      flush=True)
    if args.markdown:
        print()
        print(markdown_table(["cell", "attention", "threads", "seqlab ms", "torch MHA-loop ms",
                              "speedup", "torch K/V-once ms", "speedup", "seqlab GFLOP/s"], table))


if __name__ == "__main__":
    main()
