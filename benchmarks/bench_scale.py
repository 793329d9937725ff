"""Scale limits, measured: peak resident memory (and time) of three large runs, each beside
the bound it must meet.

- ``recurrent``: an LSTM forward and backward over 10,000 time steps. Bound: the memory
  it adds is linear in the steps, at most 3x what the backward must keep (the gate
  pre-activations and the states of every step, ``T*B*(G+2)*H`` floats) plus 64 MB.
- ``topk``: top-k search of 16 and 64 queries over a 1M x 768 float32 bank memory-mapped
  from a 3 GB file (in a temp dir, deleted after). Bound: peak RSS at most a quarter of
  the bank (the search must not read the bank into memory).
- ``poems``: a generated corpus of 100,000 poems (PoetryDB JSON Lines) with GloVe-format
  word vectors, through the poetry recipe's data preparation (load, tokenize, vocabulary,
  vectors, chunk, encode) and one epoch of batches. Bound: peak RSS at most
  ``BYTES_PER_TOKEN`` bytes per corpus token plus ``BASE_MB``.

Each case runs in its own process (``resource.getrusage``'s peak RSS is per process);
the parent writes the inputs first, so that the measured process only reads them.
RSS is what this script is for; its times are from whatever machine runs it.

Usage::

    python benchmarks/bench_scale.py                       # all three, a Markdown table
    python benchmarks/bench_scale.py --cases topk --bank-rows 250000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MB = 1 << 20
BYTES_PER_TOKEN = 400
BASE_MB = 256
WORDS = 5000  # vocabulary of the generated poems


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MB.

    ``VmHWM`` of /proc/self/status belongs to the process's own address space, which
    ``exec`` makes anew. ``getrusage``'s ``ru_maxrss`` is not reset by ``exec``: a child
    started from a large process (pytest late in the suite) would report its parent's
    peak. It is the fallback where /proc is absent.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ inputs
def write_bank(path: Path, rows: int, dim: int, seed: int = 0) -> None:
    """A (rows, dim) float32 bank written in blocks (never whole in memory)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    block = max(1, (64 * MB) // (dim * 4))
    with path.open("wb") as f:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            rng.standard_normal((n, dim), dtype=np.float32).tofile(f)


def write_poems(folder: Path, poems: int, dim: int = 50, seed: int = 0) -> tuple[Path, Path]:
    """``poems.jsonl`` (PoetryDB records of 4-12 lines of 3-8 words) and ``vectors.txt``
    (GloVe text, one vector per word of the vocabulary)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(WORDS)]
    zipf = 1.0 / np.arange(1, WORDS + 1)
    zipf /= zipf.sum()
    corpus = folder / "poems.jsonl"
    with corpus.open("w") as f:
        for p in range(poems):
            n_lines = int(rng.integers(4, 13))
            ids = rng.choice(WORDS, size=n_lines * 8, p=zipf)
            lengths = rng.integers(3, 9, n_lines)
            lines = [" ".join(words[i] for i in ids[k * 8 : k * 8 + n]) for k, n in enumerate(lengths)]
            f.write(json.dumps({"title": f"poem {p}", "author": "generated", "lines": lines}) + "\n")
    vectors = folder / "vectors.txt"
    with vectors.open("w") as f:
        for w, row in zip(words, rng.standard_normal((WORDS, dim)).astype(np.float32)):
            f.write(w + " " + " ".join(f"{x:.4f}" for x in row) + "\n")
    return corpus, vectors


# ------------------------------------------------------------------- cases
def case_recurrent(steps: int = 10_000, batch: int = 4, inputs: int = 32, hidden: int = 64) -> dict[str, Any]:
    import numpy as np

    import seqlab
    from seqlab import nn

    gates = 4
    lstm = nn.LSTM(inputs, hidden, batch_first=True)
    x = seqlab.tensor(np.random.default_rng(0).standard_normal((batch, steps, inputs), dtype=np.float32),
                      requires_grad=True)
    before = peak_rss_mb()
    start = time.perf_counter()
    out, _ = lstm(x)
    out.backward(np.ones(out.shape, np.float32))
    seconds = time.perf_counter() - start
    assert x.grad is not None and np.isfinite(x.grad).all()
    kept = steps * batch * (gates + 2) * hidden * 4 / MB
    return {"what": f"LSTM B={batch} T={steps:,} C={inputs} H={hidden}, forward + backward",
            "seconds": seconds, "before_mb": before, "peak_mb": peak_rss_mb(),
            "added_mb": peak_rss_mb() - before, "bound_mb": 3 * kept + 64,
            "bound": f"added <= 3 x {kept:.0f} MB (the steps' gates and states) + 64 MB",
            "measured": "added"}


def case_topk(bank: str, rows: int, dim: int, queries: tuple[int, ...] = (16, 64),
              k: int = 10) -> dict[str, Any]:
    import numpy as np

    from seqlab.metrics import topk

    mm = np.memmap(bank, dtype=np.float32, mode="r", shape=(rows, dim))
    rng = np.random.default_rng(1)
    before = peak_rss_mb()
    start = time.perf_counter()
    for q in queries:
        scores, idx = topk(rng.standard_normal((q, dim), dtype=np.float32), mm, k)
        assert idx.shape == (q, k) and np.isfinite(scores).all()
    seconds = time.perf_counter() - start
    bank_mb = rows * dim * 4 / MB
    return {"what": f"top-{k} of {' and '.join(map(str, queries))} queries over a memory-mapped "
                    f"{rows:,} x {dim} float32 bank ({bank_mb / 1024:.2f} GiB)",
            "seconds": seconds, "before_mb": before, "peak_mb": peak_rss_mb(),
            "added_mb": peak_rss_mb() - before, "bound_mb": bank_mb / 4,
            "bound": f"peak <= bank / 4 = {bank_mb / 4:.0f} MB", "measured": "peak"}


def case_poems(corpus: str, vectors: str, batch_size: int = 64) -> dict[str, Any]:
    import numpy as np

    from seqlab.data.batching import SequenceBatches
    from seqlab.models.poetry import preset
    from seqlab.models.poetry.dataset import prepare

    before = peak_rss_mb()
    start = time.perf_counter()
    config = preset("small", embeddings=vectors)
    data = prepare(corpus, config)
    batches = SequenceBatches(data.chunks["train"], batch_size=batch_size, max_len=config.max_len)
    n = sum(1 for _ in batches.batches(np.random.default_rng(0)))  # one shuffled epoch
    seconds = time.perf_counter() - start
    tokens = data.chunk_report.tokens
    size_mb = os.path.getsize(corpus) / MB
    return {"what": f"{len(data.corpus):,} generated poems ({tokens:,} tokens, {size_mb:.0f} MB "
                    f"JSON Lines) prepared, {n:,} batches of {batch_size}",
            "seconds": seconds, "before_mb": before, "peak_mb": peak_rss_mb(),
            "added_mb": peak_rss_mb() - before, "bound_mb": tokens * BYTES_PER_TOKEN / MB + BASE_MB,
            "bound": f"peak <= {BYTES_PER_TOKEN} B/token x {tokens:,} + {BASE_MB} MB", "measured": "peak"}


CASES = {"recurrent": case_recurrent, "topk": case_topk, "poems": case_poems}


# ------------------------------------------------------------------ parent
def run_case(case: str, **params: Any) -> dict[str, Any]:
    """Runs one case in a fresh process; its figures, with ``ok`` (the bound met)."""
    proc = subprocess.run([sys.executable, __file__, "--child", case, json.dumps(params)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["case"] = case
    r["ok"] = r[f"{r['measured']}_mb"] <= r["bound_mb"]
    return r


def measure(cases: list[str], bank_rows: int, dim: int, poems: int, steps: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="seqlab-scale-") as d:
        folder = Path(d)
        for case in cases:
            if case == "recurrent":
                rows.append(run_case(case, steps=steps))
            elif case == "topk":
                bank = folder / "bank.f32"
                write_bank(bank, bank_rows, dim)
                try:
                    rows.append(run_case(case, bank=str(bank), rows=bank_rows, dim=dim))
                finally:
                    bank.unlink()
            else:
                corpus, vectors = write_poems(folder, poems)
                rows.append(run_case(case, corpus=str(corpus), vectors=str(vectors)))
            r = rows[-1]
            print(f"{case}: peak {r['peak_mb']:.0f} MB, {r['seconds']:.1f} s, bound met: {r['ok']}",
                  file=sys.stderr)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| case | what | RSS before (MB) | peak RSS (MB) | added (MB) | bound | met | seconds |",
             "|---|---|---:|---:|---:|---|---|---:|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['what']} | {r['before_mb']:.0f} | {r['peak_mb']:.0f} | "
                     f"{r['added_mb']:.0f} | {r['bound']} | {'yes' if r['ok'] else 'NO'} "
                     f"| {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="recurrent,topk,poems")
    ap.add_argument("--bank-rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--poems", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--child", nargs=2, metavar=("CASE", "PARAMS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(CASES[args.child[0]](**json.loads(args.child[1]))))
        return 0
    cases = args.cases.split(",")
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        ap.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    rows = measure(cases, args.bank_rows, args.dim, args.poems, args.steps)
    print(table(rows))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
