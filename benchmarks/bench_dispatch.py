"""The dispatched build against a native build and PyTorch, one case per kernel family.

Configurations, each timed in its own process, one after another:
- ``native``: a ``-march=native`` build of seqlab (``SEQLAB_NATIVE=ON``), found on
  ``--native-path`` (a directory holding its ``seqlab`` package);
- ``dispatched``: the seqlab this script imports, at the level it selects on this CPU;
- ``dispatched x86-64-v3`` (and any other ``--levels``): the same build forced to that level
  with ``SEQLAB_ARCH`` (the AVX2 + FMA kernels an AVX2-only cloud CPU runs);
- ``PyTorch``: the same shapes, dtype (float32) and thread count.

Cases: a training step (forward, loss, backward, Adam) of an LSTM and a GRU layer, one of a
pre-LN transformer encoder layer and of a causal decoder block, attention forward+backward
at T=512, the fused recurrent decoder (the poetry autoencoder's decoder: LSTM, teacher
forcing 0.5, with and without attention), exact top-10 search of 1,000 and of 16 queries
in a 200k x 384 bank, and an Adam step over 10M parameters. Each case: warm-up, then
the median of ``--repeats`` calls. The configurations run in turn ``--rounds`` times
(a process per configuration and round) and each figure is the median over the rounds:
on a 2-core VM one process's times can move by 1.5x from the next one's.

    python benchmarks/bench_dispatch.py --native-path /tmp/seqlab-native/python
    python benchmarks/bench_dispatch.py --native-path DIR --levels x86-64-v3 x86-64-v2 --threads 1

``--build LABEL=DIR`` (repeatable) adds another build of seqlab as a column, e.g. one
whose kernels were compiled with other flags; ``--cases TEXT`` keeps the cases whose name
contains TEXT (repeatable), ``--no-torch`` leaves PyTorch out:

    python benchmarks/bench_dispatch.py --build mtune-icx=/tmp/icx/python --levels \
        --cases fwd+bwd --no-torch --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness import machine_description, markdown_table, median_seconds

HERE = Path(__file__).resolve().parent


def _recurrent(lib: str, cell: str, shape: tuple[int, int, int, int]) -> Callable[[], object]:
    import seqlab
    from bench_recurrent import seqlab_step, torch_step

    batch, seq, inp, hidden = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, seq, inp), dtype=np.float32)
    target = rng.standard_normal((batch, seq, hidden), dtype=np.float32)
    state = getattr(seqlab.nn, cell)(inp, hidden).state_dict()
    if lib == "torch":
        import torch

        return torch_step(torch, cell, x, target, state, "Adam")
    return seqlab_step(cell, x, target, state, "Adam")


def _block(lib: str, kind: str) -> Callable[[], object]:
    import bench_attention

    torch = _torch()
    ours, theirs = bench_attention.block_cases(torch, kind)
    return theirs if lib == "torch" else ours


def _attention(lib: str, seq: int, causal: bool) -> Callable[[], object]:
    import bench_attention

    torch = _torch()
    ours, theirs, _ = bench_attention.attention_cases(torch, seq, causal)
    return theirs if lib == "torch" else ours


def _decoder(lib: str, attention: bool) -> Callable[[], object]:
    import bench_decoder
    import seqlab

    B, T, E, H, S = 32, 50, 300, 256, 50
    rng = np.random.default_rng(0)
    targets = rng.standard_normal((B, T, E), dtype=np.float32)
    lengths = rng.integers(T // 2, T + 1, size=B)
    lengths[0] = T
    h0 = rng.standard_normal((B, H), dtype=np.float32) * np.float32(0.1)
    memory = rng.standard_normal((B, S, H), dtype=np.float32) if attention else None
    dec = seqlab.nn.RecurrentDecoder(E, H, cell="lstm", init="orthogonal",
                                     attention_dim=H if attention else None, num_heads=8)
    if lib == "torch":
        return bench_decoder.torch_step(_torch(), dec, targets, lengths, h0, memory, 0.5)
    return bench_decoder.seqlab_step(dec, targets, lengths, h0, memory, 0.5)


def _topk(lib: str, queries: int) -> Callable[[], object]:
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((200_000, 384), dtype=np.float32)
    q = rng.standard_normal((queries, 384), dtype=np.float32)
    if lib == "torch":
        torch = _torch()
        bt, qt = torch.from_numpy(bank), torch.from_numpy(q)
        return lambda: torch.topk(qt @ bt.T, 10, dim=1)
    import seqlab.metrics

    return lambda: seqlab.metrics.topk(q, bank, 10, "ip")


def _adam(lib: str) -> Callable[[], object]:
    from bench_optim import _shapes

    rng = np.random.default_rng(0)
    shapes = _shapes(10_000_000)
    values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    if lib == "torch":
        torch = _torch()
        params = [torch.nn.Parameter(torch.tensor(v)) for v in values]
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.tensor(g)
        opt = torch.optim.Adam(params, lr=1e-3, weight_decay=0.01, foreach=True)
        return opt.step
    import seqlab

    ours = [seqlab.nn.Parameter(v) for v in values]
    sopt = seqlab.optim.Adam(ours, lr=1e-3, weight_decay=0.01)
    for p, g in zip(ours, grads, strict=True):
        p.grad = g.copy()
    sopt.step()
    return sopt.step


CASES: dict[str, Callable[[str], Callable[[], object]]] = {
    "LSTM step (16, 50, 300, 256)": lambda lib: _recurrent(lib, "LSTM", (16, 50, 300, 256)),
    "GRU step (16, 50, 300, 256)": lambda lib: _recurrent(lib, "GRU", (16, 50, 300, 256)),
    "GRU step (32, 80, 96, 128)": lambda lib: _recurrent(lib, "GRU", (32, 80, 96, 128)),
    "encoder layer step, pre-LN (32, 128, 256)": lambda lib: _block(lib, "encoder pre-LN"),
    "decoder block step, causal (32, 128, 256)": lambda lib: _block(lib, "decoder block (causal)"),
    "attention fwd+bwd, T=512, causal": lambda lib: _attention(lib, 512, True),
    "recurrent decoder step, LSTM (32, 50, 300, 256)": lambda lib: _decoder(lib, False),
    "recurrent decoder step, LSTM + attention": lambda lib: _decoder(lib, True),
    "top-10, 200k x 384, 1,000 queries": lambda lib: _topk(lib, 1000),
    "top-10, 200k x 384, 16 queries": lambda lib: _topk(lib, 16),
    "Adam step, 10M parameters": _adam,
}


def _torch() -> Any:
    import torch

    return torch


def worker(lib: str, threads: int, repeats: int, result: Path, cases: list[str]) -> None:
    """Times the cases for one library in this process; writes {case: seconds} to ``result``."""
    times: dict[str, float] = {}
    if lib == "torch":
        torch = _torch()
        torch.set_num_threads(threads)
        info = f"PyTorch {torch.__version__}"
    else:
        import seqlab

        seqlab.set_num_threads(threads)
        cpu_info = getattr(seqlab, "cpu_info", None)
        info = "native (no cpu_info)" if cpu_info is None else json.dumps(
            {k: v for k, v in cpu_info().items() if k in ("build", "level", "forced")})
        # Bench modules import torch for both sides; keep its threads at the same count.
        _torch().set_num_threads(threads)
    for name in cases:
        fn = CASES[name](lib)
        time.sleep(0.5)
        times[name] = median_seconds(fn, repeats=repeats, warmup=2)
        print(f"  {name:<48} {times[name] * 1e3:9.2f} ms", flush=True)
    result.write_text(json.dumps({"info": info, "times": times}))


def run(label: str, lib: str, env: dict[str, str], args: argparse.Namespace, out: Path) -> dict[str, Any]:
    result = out / f"{len(list(out.iterdir()))}.json"
    print(f"\n{label}", flush=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", lib, "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--result", str(result),
           *[arg for text in args.cases for arg in ("--cases", text)]]
    subprocess.run(cmd, env={**os.environ, **env}, check=True)
    data = json.loads(result.read_text())
    print(f"  ({data['info']})")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--native-path", type=Path, required=False,
                        help="directory holding a -march=native build's seqlab package")
    parser.add_argument("--levels", nargs="*", default=["x86-64-v3"],
                        help="lower levels to force besides the CPU's best")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--build", action="append", default=[], metavar="LABEL=DIR",
                        help="another build's directory holding its seqlab package, as a column")
    parser.add_argument("--cases", action="append", default=[], metavar="TEXT",
                        help="only the cases whose name contains TEXT (repeatable)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--worker", choices=["seqlab", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cases = [name for name in CASES if not args.cases or any(text in name for text in args.cases)]
    if not cases:
        parser.error(f"--cases {args.cases}: no case name contains them; cases: {list(CASES)}")
    builds = []
    for spec in args.build:
        label, sep, directory = spec.partition("=")
        if not sep or not label or not Path(directory, "seqlab").is_dir():
            parser.error(f"--build {spec!r}: expected LABEL=DIR with DIR holding a seqlab package")
        builds.append((label, Path(directory)))
    if args.worker:
        worker(args.worker, args.threads, args.repeats, args.result, cases)
        return

    import seqlab

    ours = str(Path(seqlab.__file__).resolve().parents[1])
    keep = os.environ.get("PYTHONPATH", "")
    path = os.pathsep.join(p for p in (str(HERE), keep) if p)
    print(machine_description())
    print(f"{args.threads} threads, median of {args.repeats} after 2 warm-up calls, "
          f"median of {args.rounds} rounds")
    out = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    configs: list[tuple[str, str, str, dict[str, str]]] = []
    base = {"PYTHONPATH": os.pathsep.join([ours, path]), "SEQLAB_ARCH": ""}
    if args.native_path is not None:
        native = {"PYTHONPATH": os.pathsep.join([str(args.native_path.resolve()), path]), "SEQLAB_ARCH": ""}
        configs.append(("native", "native build", "seqlab", native))
    configs.append(("dispatched", "dispatched build, best level", "seqlab", base))
    configs += [(label, f"build {label} ({directory})", "seqlab",
                 {"PYTHONPATH": os.pathsep.join([str(directory.resolve()), path]), "SEQLAB_ARCH": ""})
                for label, directory in builds]
    configs += [(level, f"dispatched build, {level}", "seqlab", {**base, "SEQLAB_ARCH": level})
                for level in args.levels]
    if not args.no_torch:
        configs.append(("PyTorch", "PyTorch", "torch", {"PYTHONPATH": path}))
    samples: dict[str, dict[str, list[float]]] = {key: {name: [] for name in cases} for key, *_ in configs}
    for r in range(args.rounds):
        for key, label, lib, env in configs:
            times = run(f"{label} (round {r + 1} of {args.rounds})", lib, env, args, out)["times"]
            for name in cases:
                samples[key][name].append(times[name])
    columns = {key: {name: statistics.median(v) for name, v in cases.items()}
               for key, cases in samples.items()}

    headers = ["case", *[f"{c} ms" for c in columns]]
    if "native" in columns:
        headers.append("native / dispatched")
    headers += [f"{label} / dispatched" for label, _ in builds]
    torch_levels = [] if args.no_torch else args.levels
    headers += [f"PyTorch / {level}" for level in torch_levels]
    rows = []
    for name in cases:
        row: list[object] = [name, *[f"{columns[c][name] * 1e3:.2f}" for c in columns]]
        if "native" in columns:
            row.append(f"{columns['native'][name] / columns['dispatched'][name]:.3f}")
        row += [f"{columns[label][name] / columns['dispatched'][name]:.3f}" for label, _ in builds]
        row += [f"{columns['PyTorch'][name] / columns[level][name]:.2f}" for level in torch_levels]
        rows.append(row)
    print()
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
