"""Code optimizer: seqlab's seq2seq pointer-generator model against its PyTorch twin.

Two measurements, each library timed alone in its own process (``--worker``):

* ``train``: one training step of the original configuration (preset ``original``:
  vocabulary 50,000, embedding and hidden 256, 2-layer bidirectional LSTM encoder,
  pointer-generator decoder, batch 32, sources and targets of 100 tokens, 20 extended
  out-of-vocabulary slots): forward, masked NLL, backward, gradient clipping to 5.0
  and an AdamW step, at each ``--threads`` count. PyTorch: ``torch_twins.TorchCodeSeq2Seq``
  (packed ``nn.LSTM`` encoder, ``LSTMCell`` + ``MultiheadAttention`` loop, ``Linear``
  over all steps, ``scatter_add`` copy) with ``torch.optim.AdamW``. Dropout is off in
  both (the twin and seqlab draw different masks).
* ``beam``: beam search of width 5 (GNMT length penalty 0.6, up to 100 tokens), one
  example at a time, seconds per example; the same search code over seqlab's C++ step
  (``DecoderSession``) and over an incremental PyTorch decoder
  (``torch_twins.TorchDecoderSession``: keys and values projected once, one step per token),
  each giving the search its rows' 5 best tokens (seqlab's picked in C++, the twin's by
  ``torch.topk``). Three rows per thread count: both in fp32; seqlab's ``precision="bf16"``
  session (a bf16 copy of the vocabulary weight streamed per step, the candidates re-scored
  in fp32: the fp32 beams) against the fp32 twin; and both with a bf16 vocabulary weight
  (the twin's through torch's bf16 GEMM, not re-scored).

Beside the seconds: the training step's GFLOP/s (its products, ``training_flops``, over the
median time) and the beam step's GB/s (the vocabulary projection's weights, read once per
step), against the machine's ceilings (DESIGN.md: ~120 GFLOP/s per core on large sgemm,
~11.5 GB/s of memory reads on one core, ~23 GB/s on two).

The batches are random ids of the real shapes (step time does not depend on the
values; targets are copied from the sources at every third step so that the copy
path carries gradient). Before anything is timed the main process checks that the
twin matches seqlab's loss and every gradient on the timed batch, and that both
decoders return the same beams.

    python benchmarks/bench_code_optimizer.py                 # original configuration, 1 and 2 threads
    python benchmarks/bench_code_optimizer.py --tiny          # small shapes: checks the script runs
    python benchmarks/bench_code_optimizer.py --markdown
    python benchmarks/bench_code_optimizer.py --preset small  # the recipe's default model
    python benchmarks/bench_code_optimizer.py --tasks train --breakdown  # seqlab's step per kernel

``--breakdown``: where seqlab's training step spends its time at each thread count (a
cProfile of the timed steps per ``_core`` kernel, and the rest outside the kernels) and each
part's speedup from the first thread count to the last (``bench_code_lm``'s breakdown).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
EXTENDED = 20
EOS, UNK = 2, 1
# The measured ceilings of this machine (DESIGN.md): OpenBLAS sgemm on large shapes per
# core, and streaming memory reads with one and two cores.
SGEMM_GFLOPS_PER_CORE = 120.0
STREAM_GBS_PER_CORE = (11.5, 23.0)


def config_for(tiny: bool, name: str = "original") -> Any:
    from seqlab.models.code import preset

    if tiny:
        return preset(
            "tiny",
            vocab_size=300,
            embedding_dim=16,
            hidden_size=16,
            num_layers=2,
            max_len=12,
            batch_size=4,
            dropout=0.0,
        )
    return preset(name, dropout=0.0)


def make_batch(config: Any, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A padded batch of the config's shapes: source ids, lengths, extended ids, target ids,
    extended ids and lengths (lengths between half and all of max_len)."""
    rng = np.random.default_rng(seed)
    B, L, V = config.batch_size, config.max_len, config.vocab_size
    src_len = rng.integers(L // 2, L + 1, size=B)
    src_len[0] = L
    tgt_len = rng.integers(L // 2, L + 1, size=B)
    tgt_len[0] = L
    src_ext = rng.integers(3, V + EXTENDED, size=(B, L))
    tgt_ext = rng.integers(3, V, size=(B, L))
    pick = rng.integers(0, src_len[:, None], size=(B, L))
    copied = np.take_along_axis(src_ext, pick, axis=1)
    tgt_ext[:, ::3] = copied[:, ::3]
    for b in range(B):
        src_ext[b, src_len[b] :] = 0
        tgt_ext[b, tgt_len[b] :] = 0
        tgt_ext[b, tgt_len[b] - 1] = EOS
    src = np.where(src_ext >= V, UNK, src_ext)
    tgt = np.where(tgt_ext >= V, UNK, tgt_ext)
    return src, src_len, src_ext, tgt, tgt_ext, tgt_len


def training_flops(config: Any, batch: tuple[np.ndarray, ...], head_rows: int | None = None) -> float:
    """Multiply-add FLOPs (2 per multiply-add) of one training step's products: forward,
    and backward at twice the forward (the input and weight gradients). The encoder's
    rows are every (example, source step) (both libraries run the padded steps), the
    decoder's every (example, target step), the vocabulary head's ``head_rows`` (default:
    the counted target tokens, the head's useful work; PyTorch projects every padded step
    too). Element-wise work (softmax, cells, AdamW) is left out."""
    B, L = config.batch_size, config.max_len
    E, H, V = config.embedding_dim, config.hidden_size, config.vocab_size
    S = T = L
    rows = int(np.asarray(batch[5]).sum()) if head_rows is None else head_rows
    fwd = 0.0
    width = E
    for _ in range(config.num_layers):  # bidirectional LSTM layers
        fwd += 2 * 2 * B * S * 4 * H * (width + H)
        width = 2 * H
    fwd += 2 * B * T * 4 * H * (E + H)  # decoder LSTM cell
    fwd += 2 * B * T * 2 * H * H  # query and attention output
    fwd += 2 * 2 * B * S * H * 2 * H  # keys and values of the memory
    fwd += 2 * 2 * B * T * S * H  # scores and context
    fwd += 2 * rows * V * 2 * H  # vocabulary logits
    return 3.0 * fwd


def build_models(config: Any, seed: int = 0) -> tuple[Any, Any]:
    import seqlab
    from seqlab.models.code import CodeSeq2Seq
    from torch_twins import torch_code_seq2seq

    seqlab.manual_seed(seed)
    model = CodeSeq2Seq(config)
    return model, torch_code_seq2seq(model)


def check_parity(config: Any) -> str:
    """Loss and every gradient of the twin against seqlab's on the timed batch; the beams of
    two examples. Raises AssertionError on a mismatch."""
    import torch

    from seqlab.models.code import DecoderSession, beam_search
    from torch_twins import TorchDecoderSession

    model, twin = build_models(config)
    batch = make_batch(config)
    loss = model(*batch, config.vocab_size + EXTENDED)
    model.zero_grad()
    loss.backward()
    ref = twin(*(torch.as_tensor(np.asarray(a, dtype=np.int64)) for a in batch), config.vocab_size + EXTENDED)
    ref.backward()
    np.testing.assert_allclose(float(loss.data), ref.item(), rtol=1e-4)
    theirs = {k: p.grad for k, p in twin.named_parameters()}
    worst = 0.0
    for name, p in model.named_parameters():
        key = name.replace("decoder.attention.", "decoder.mha.")
        for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if name == f"decoder.{w}":
                key = f"decoder.cell.{w}"
        g = theirs[key].numpy()
        scale = float(np.abs(g).max()) or 1.0
        err = float(np.abs(p.grad - g).max()) / scale
        worst = max(worst, err)
        assert err < 1e-3, f"{name}: gradient differs from PyTorch's by {err:.2e} of its largest value"
    model.eval()
    src, src_len, src_ext = (a[:2] for a in batch[:3])
    X = config.vocab_size + EXTENDED
    steps = min(config.max_len, 20)
    ours = beam_search(DecoderSession(model, src, src_len, src_ext, X, UNK), 5, steps, EOS)
    other = beam_search(TorchDecoderSession(twin, src, src_len, src_ext, X, UNK), 5, steps, EOS)
    assert [[h.tokens for h in b] for b in ours] == [[h.tokens for h in b] for b in other], "beams differ"
    bf16 = beam_search(DecoderSession(model, src, src_len, src_ext, X, UNK, precision="bf16"), 5, steps, EOS)
    assert [[h.tokens for h in b] for b in bf16] == [[h.tokens for h in b] for b in ours], "bf16 beams differ"
    return (
        f"loss {float(loss.data):.6f} vs {ref.item():.6f}, largest relative gradient difference {worst:.1e}; "
        "beams equal (seqlab fp32, bf16 and PyTorch fp32)"
    )


class CountedSession:
    """A decoding session that counts its steps (the beam search's tokens)."""

    def __init__(self, session: Any) -> None:
        self.session, self.batch, self.steps = session, session.batch, 0

    def initial_state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.session.initial_state()  # type: ignore[no-any-return]

    def step(self, *args: Any) -> Any:
        self.steps += 1
        return self.session.step(*args)

    def step_top_k(self, *args: Any) -> Any:
        self.steps += 1
        return self.session.step_top_k(*args)


def worker(
    library: str,
    task: str,
    threads: int,
    tiny: bool,
    repeats: int,
    name: str,
    precision: str = "fp32",
    breakdown: bool = False,
) -> dict[str, Any]:
    """Median seconds of the task for one library, in this process."""
    import statistics

    config = config_for(tiny, name)
    X = config.vocab_size + EXTENDED
    batch = make_batch(config)
    if library == "torch":
        import torch

        torch.set_num_threads(threads)
    import seqlab

    seqlab.set_num_threads(threads)
    model, twin = build_models(config)
    times: list[float] = []
    if task == "train":
        if library == "seqlab":
            params = list(model.parameters())
            opt = seqlab.optim.AdamW(params, lr=config.lr)

            def run() -> None:
                opt.zero_grad()
                loss = model(*batch, X)
                loss.backward()
                seqlab.nn.utils.clip_grad_norm_(params, config.clip_grad_norm)
                opt.step()
        else:
            import torch

            tbatch = [torch.as_tensor(np.asarray(a, dtype=np.int64)) for a in batch]
            topt = torch.optim.AdamW(twin.parameters(), lr=config.lr)

            def run() -> None:
                topt.zero_grad()
                loss = twin(*tbatch, X)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(twin.parameters(), config.clip_grad_norm)
                topt.step()

        run()
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        result: dict[str, Any] = {
            "seconds": statistics.median(times), "gflop": training_flops(config, batch) / 1e9
        }
        if breakdown and library == "seqlab":
            from bench_code_lm import kernel_breakdown

            result["breakdown"] = kernel_breakdown(lambda _: run(), [None] * repeats)
        return result
    from seqlab.models.code import DecoderSession, beam_search
    from torch_twins import TorchDecoderSession

    model.eval()
    session_type = DecoderSession if library == "seqlab" else TorchDecoderSession
    net = model if library == "seqlab" else twin
    examples = min(config.batch_size, max(repeats, 2))
    steps: list[int] = []
    for i in range(-1, examples):  # example -1 (the first, again): warm-up
        j = max(i, 0)
        t0 = time.perf_counter()
        session = session_type(
            net, batch[0][j : j + 1], batch[1][j : j + 1], batch[2][j : j + 1], X, UNK, precision=precision
        )
        counted = CountedSession(session)
        beam_search(counted, 5, config.max_len, EOS)
        if i >= 0:
            times.append(time.perf_counter() - t0)
            steps.append(counted.steps)
    return {"seconds": statistics.median(times), "steps": statistics.median(steps)}


def spawn(
    library: str,
    task: str,
    threads: int,
    tiny: bool,
    repeats: int,
    name: str,
    precision: str = "fp32",
    breakdown: bool = False,
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        library,
        "--task",
        task,
        "--threads",
        str(threads),
        "--repeats",
        str(repeats),
        "--preset",
        name,
        "--precision",
        precision,
    ] + (["--tiny"] if tiny else []) + (["--breakdown"] if breakdown else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tasks", nargs="+", default=["train", "beam"], choices=["train", "beam"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="small shapes, to check the script runs")
    parser.add_argument("--preset", default="original", help="the model preset timed (dropout off)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument(
        "--breakdown", action="store_true", help="seqlab's training step per kernel and thread count"
    )
    parser.add_argument("--worker", choices=["seqlab", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--task", choices=["train", "beam"], help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.worker:
        result = worker(
            args.worker, args.task, args.threads[0], args.tiny, args.repeats, args.preset, args.precision,
            args.breakdown,
        )
        print(json.dumps(result))
        return
    from harness import machine_description, markdown_table

    print(machine_description())
    config = config_for(args.tiny, args.preset)
    print("parity:", check_parity(config))
    rows = []
    # (task, seqlab's precision, PyTorch's): the beam rows compare the vocabulary weight in
    # fp32, seqlab's bf16 session (the fp32 beams) against the fp32 twin, and both in bf16.
    runs = [(t, p, q) for t in args.tasks
            for p, q in ([("fp32", "fp32")] if t == "train" else
                         [("fp32", "fp32"), ("bf16", "fp32"), ("bf16", "bf16")])]
    measured: dict[tuple[str, str, str, int], dict[str, float]] = {}

    def measure(library: str, task: str, threads: int, precision: str) -> dict[str, float]:
        key = (library, task, precision, threads)  # each worker run once, reused across rows
        if key not in measured:
            measured[key] = spawn(
                library, task, threads, args.tiny, args.repeats, args.preset, precision, args.breakdown
            )
        return measured[key]

    for task, precision, torch_precision in runs:
        for threads in args.threads:
            ours = measure("seqlab", task, threads, precision)
            theirs = measure("torch", task, threads, torch_precision)
            if task == "train":
                # GFLOP/s of the step's products (training_flops) against the sgemm ceiling.
                label = f"training step (s); GFLOP/s of {ours['gflop']:.3g} GFLOP"
                rate = [ours["gflop"] / ours["seconds"], ours["gflop"] / theirs["seconds"]]
                ceiling = SGEMM_GFLOPS_PER_CORE * threads
            else:
                # GB/s of the vocabulary projection's weights, read once per step (2 bytes a
                # weight in bf16).
                gb = config.vocab_size * 2 * config.hidden_size / 1e9
                gb_ours, gb_theirs = (gb * (2 if p == "bf16" else 4) for p in (precision, torch_precision))
                label = (f"beam-5 decode per example (s), W_out {precision} / {torch_precision}; "
                         f"GB/s of W_out over {ours['steps']:.0f} steps")
                rate = [gb_ours * ours["steps"] / ours["seconds"],
                        gb_theirs * theirs["steps"] / theirs["seconds"]]
                ceiling = STREAM_GBS_PER_CORE[min(threads, 2) - 1]
            speedup = theirs["seconds"] / ours["seconds"]
            row = [label, threads, ours["seconds"], theirs["seconds"], speedup,
                   f"{rate[0]:.3g} / {rate[1]:.3g} (ceiling {ceiling:.0f})"]
            rows.append(row)
            # Each row as soon as it is measured (a long run on a busy machine keeps what it has).
            print(f"{row[0]:80s} threads {row[1]}: seqlab {row[2]:.4f}  PyTorch {row[3]:.4f}  "
                  f"x{row[4]:.2f}  {row[5]}", flush=True)
    if args.markdown:
        header = ["measurement", "threads", "seqlab", "PyTorch", "speedup", "rate seqlab / PyTorch"]
        print(markdown_table(header, rows))
    if args.breakdown and "train" in args.tasks:
        from bench_code_lm import print_breakdown

        print_breakdown({t: r["breakdown"] for (lib, task, _, t), r in measured.items()
                         if lib == "seqlab" and task == "train"})

if __name__ == "__main__":
    main()
