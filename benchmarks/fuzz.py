"""Coverage-guided fuzzing (atheris / libFuzzer) of every reader of untrusted files.

Each target feeds mutated bytes to one reader. A reader may refuse its input only with
the exceptions its docstring names (``ALLOWED`` below); any other exception, and any
input taking longer than ``--slow`` seconds, is a finding: recorded with its traceback
and its input saved beside it (``<out>/<target>/finding-<sha1>.bin``). libFuzzer's own
``-timeout`` catches a hang, its ``-rss_limit_mb`` an input that allocates without bound.

Usage::

    python benchmarks/fuzz.py --runs 100000                  # every target, table on stdout
    python benchmarks/fuzz.py --targets poems,npz --runs 5000 --table fuzz.md
    python benchmarks/fuzz.py --runs 100000 --max-seconds 300  # at most 5 minutes per target
    python benchmarks/fuzz.py --replay poems path/to/input    # re-run one saved input

Every target runs in its own process (libFuzzer owns the process it runs in); the parent
collects executions, coverage (libFuzzer's ``cov``: instrumented edges of seqlab's own
Python code, and ``ft``: features) and findings into one Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The exceptions each reader documents. UnicodeDecodeError is a ValueError.
ALLOWED: dict[str, tuple[type[BaseException], ...]] = {
    "poems": (ValueError,),
    "word_vectors": (ValueError,),
    "events_json": (ValueError,),
    "events_jsonl": (ValueError,),
    "csv": (ValueError,),
    "npz": (ValueError, TypeError),
    "checkpoint": (ValueError,),
    "run_safetensors": (ValueError, TypeError),
    "run_toml": (ValueError, TypeError),
    "run_json": (ValueError, TypeError),
    "load": (ValueError, TypeError, FileNotFoundError),
    "code_pairs": (ValueError,),  # CodeDataError is a ValueError
    "source_folder": (ValueError,),
}
TARGETS = tuple(ALLOWED)

# ------------------------------------------------------------------------- seeds
_EVENT = {
    "timestamp": "2024-05-01T13:00:02Z", "agent_id": "a1", "event_type": "completion",
    "performance_metrics": {"latency_ms": 812.0, "tokens_per_second": 41.5, "memory_usage_mb": 1830.0,
                            "cpu_usage_percent": 63.0, "success_rate": 0.97},
    "prompt_data": {"prompt_text": "hi", "prompt_tokens": 120, "response_tokens": 300, "quality_score": 0.8},
}
_POEM = {"title": "Night", "author": "Anon", "lines": ["the moon is high", "the sea is deep"],
         "linecount": "2"}


def _npz_bytes(offsets: bool) -> bytes:
    import io

    import numpy as np

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    vectors = rng.standard_normal((6, 3)).astype(np.float32)
    if offsets:
        np.savez(buf, vectors=vectors, chain_offsets=np.array([0, 3, 6]), names=np.array(["a", "b"]))
    else:
        np.savez_compressed(buf, vectors=vectors, chain_ids=np.array([0, 0, 0, 1, 1, 1]))
    return buf.getvalue()


def _bundle_bytes() -> bytes:
    import numpy as np

    from seqlab.serialization import save_bundle

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.safetensors"
        save_bundle(p, {"epoch": 3, "model": {"w": np.ones((2, 3), np.float32)}, "history": [{"loss": 1.0}]})
        return p.read_bytes()


_PAIR = {"task": "bug_fix", "lang": "python", "source": "def f(a, b):\n    return a - b\n",
         "target": "def f(a, b):\n    return a + b\n"}
_C_SOURCE = b"#include <stdio.h>\n/* sum */\nint add(int a, int b) { return a + b; }\n"
_PY_SOURCE = b"import os\n\n\ndef main(path):\n    return os.path.exists(path)\n"
_SOURCE_NAMES = ("add.c", "util/add.h", "vendor/main.py")


def seeds(target: str, run_dir: Path | None) -> list[bytes]:
    """Valid inputs each target starts mutating from."""
    if target == "code_pairs":
        c_pair = {**_PAIR, "task": "completion", "lang": "c", "source": "int f(int a) {",
                  "target": "return a; }"}
        return [(json.dumps(_PAIR) + "\n" + json.dumps(c_pair) + "\n").encode(),
                (json.dumps({k: v for k, v in _PAIR.items() if k != "lang"}) + "\n").encode()]
    if target == "source_folder":
        return [_pack([_C_SOURCE, _C_SOURCE[:40], _PY_SOURCE]), _pack([_C_SOURCE, b"", b"\0\1"])]
    if target == "poems":
        return [json.dumps([_POEM]).encode(), json.dumps({"poems": [_POEM, _POEM]}).encode(),
                (json.dumps(_POEM) + "\n" + json.dumps(_POEM) + "\n").encode(),
                b"the moon is high\nthe sea\n%\nred rose\nblue sky\n%\n",
                b"the moon is high\nthe sea is deep\n\n\nred rose\nblue sky\n"]
    if target == "word_vectors":
        return [b"the 0.1 0.2 0.3\nmoon -1 2e-3 4\n", b"2 3\nthe 0.1 0.2 0.3\nmoon -1 2e-3 4\n"]
    if target == "events_json":
        return [json.dumps([_EVENT, {**_EVENT, "timestamp": 1714568402.5}]).encode()]
    if target == "events_jsonl":
        return [(json.dumps(_EVENT) + "\n" + json.dumps({**_EVENT, "agent_id": "b"}) + "\n").encode()]
    if target == "csv":
        return [b"date,OT,x\n2024-01-01 00:00:00,1.5,2\n2024-01-01 01:00:00,,3\n2024-01-01 02:00:00,2,4\n"]
    if target == "npz":
        return [_npz_bytes(True), _npz_bytes(False)]
    if target == "checkpoint":
        return [_bundle_bytes()]
    assert run_dir is not None
    files = {name: (run_dir / name).read_bytes() for name in _RUN_FILES}
    if target == "run_safetensors":
        return [files["model.safetensors"]]
    if target == "run_toml":
        return [files["model_config.toml"]]
    if target == "run_json":
        return [files["vocabulary.json"]]
    return [_pack([files[name] for name in _RUN_FILES])]


# ---------------------------------------------------------------- run directories
_RUN_FILES = ("model_config.toml", "vocabulary.json", "model.safetensors")


def make_run_dir(path: Path) -> Path:
    """A small saved poetry autoencoder (untrained: its files are what is being read)."""
    import numpy as np

    from seqlab.data.vocabulary import Vocabulary
    from seqlab.models.poetry import SequenceAutoencoder, preset
    from seqlab.recipes.poetry import PoetryAutoencoder

    config = preset("tiny", attention=True, num_heads=2)
    vocab = Vocabulary(["<pad>", "<unk>", "moon", "sea", "rose"], [0, 0, 3, 2, 1])
    embedding = np.random.default_rng(0).standard_normal((len(vocab), 8)).astype(np.float32)
    model = SequenceAutoencoder(config, 8)
    return PoetryAutoencoder(model, config, vocab, embedding).save(path)


def _pack(parts: list[bytes]) -> bytes:
    """Several files in one input: a 4-byte length before each."""
    return b"".join(len(p).to_bytes(4, "little") + p for p in parts)


def _unpack(data: bytes, count: int) -> list[bytes]:
    parts, pos = [], 0
    for i in range(count):
        if i == count - 1:
            parts.append(data[pos + 4:] if pos + 4 <= len(data) else b"")
            break
        n = int.from_bytes(data[pos:pos + 4], "little")
        parts.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    return parts


# ---------------------------------------------------------------------- readers
def make_reader(target: str, work: Path, run_dir: Path | None) -> Callable[[bytes], Any]:
    """A function of the input bytes that runs the target's reader on them."""
    import seqlab
    from seqlab.data.code.corpus import load_code_data
    from seqlab.data.events import events_to_series, read_events
    from seqlab.data.poems import load_poems
    from seqlab.data.source_files import corpus_report, read_source_files
    from seqlab.data.timeseries import read_csv_series
    from seqlab.data.vector_chains import load_vector_chains
    from seqlab.data.word_vectors import load_word_vectors
    from seqlab.train.checkpoint import load_checkpoint

    def file_reader(name: str, read: Callable[[Path], Any]) -> Callable[[bytes], Any]:
        path = work / name

        def run(data: bytes) -> Any:
            path.write_bytes(data)
            return read(path)
        return run

    def events(path: Path) -> Any:
        stream = read_events(path)
        return events_to_series(stream, bucket_seconds=60.0, max_buckets=100_000)

    def series(path: Path) -> Any:
        s = read_csv_series(path)
        return s.column_index("OT") if "OT" in s.columns else s

    def pairs(path: Path) -> Any:
        return load_code_data(path, task="all", lang="auto", max_len=100)

    simple: dict[str, tuple[str, Callable[[Path], Any]]] = {
        "poems": ("poems.txt", load_poems),
        "word_vectors": ("vectors.txt", load_word_vectors),
        "events_json": ("events.json", events),
        "events_jsonl": ("events.jsonl", events),
        "csv": ("series.csv", series),
        "npz": ("chains.npz", load_vector_chains),
        "checkpoint": ("epoch_0001.safetensors", load_checkpoint),
        "code_pairs": ("pairs.jsonl", pairs),
    }
    if target in simple:
        return file_reader(*simple[target])
    if target == "source_folder":
        # the code LM's reader over a folder of three mutated files (one in a vendored
        # folder), then its split and statistics
        folder = work / "repo"

        def sources(data: bytes) -> Any:
            if folder.exists():
                shutil.rmtree(folder)
            for name, part in zip(_SOURCE_NAMES, _unpack(data, len(_SOURCE_NAMES))):
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(part)
            corpus = read_source_files(folder, max_file_bytes=4096, max_total_bytes=8192)
            splits = corpus.split((0.8, 0.1, 0.1), seed=0)
            return corpus_report(corpus, splits)
        return sources
    assert run_dir is not None
    mine = work / "run"
    shutil.copytree(run_dir, mine)
    originals = {name: (run_dir / name).read_bytes() for name in _RUN_FILES}
    which = {"run_safetensors": ["model.safetensors"], "run_toml": ["model_config.toml"],
             "run_json": ["vocabulary.json"], "load": list(_RUN_FILES)}[target]

    def run(data: bytes) -> Any:
        parts = _unpack(data, len(which)) if len(which) > 1 else [data]
        for name, part in zip(which, parts):
            (mine / name).write_bytes(part)
        try:
            return seqlab.load(mine)
        finally:
            for name in which:
                (mine / name).write_bytes(originals[name])
    return run


# ------------------------------------------------------------------------ child
def _work_dir(target: str) -> Path:
    """A fresh work directory, on /dev/shm (memory) where available: the readers take paths,
    so each execution writes its input to a file, and a tmpfs makes that cheap."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-", dir=shm if shm.is_dir() else None))


def _where(tb: BaseException) -> str:
    frames = traceback.extract_tb(tb.__traceback__)
    inside = [f for f in frames if "seqlab" in f.filename] or frames
    f = inside[-1]
    return f"{Path(f.filename).name}:{f.lineno}"


def child(target: str, runs: int, out: Path, timeout: int, slow: float, rss_mb: int, work: Path,
          max_seconds: int) -> None:
    import atheris

    with atheris.instrument_imports(include=["seqlab"]):
        import seqlab  # noqa: F401
        import seqlab.data.code.corpus  # noqa: F401
        import seqlab.data.code.pairs  # noqa: F401
        import seqlab.data.events  # noqa: F401
        import seqlab.data.poems  # noqa: F401
        import seqlab.data.source_files  # noqa: F401
        import seqlab.data.timeseries  # noqa: F401
        import seqlab.data.vector_chains  # noqa: F401
        import seqlab.data.word_vectors  # noqa: F401
        import seqlab.recipes.loading  # noqa: F401
        import seqlab.recipes.poetry  # noqa: F401
        import seqlab.recipes.vectors  # noqa: F401
        import seqlab.serialization  # noqa: F401
        import seqlab.train.checkpoint  # noqa: F401
    folder = out / target
    corpus = folder / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    run_dir = make_run_dir(work / "base") if target.startswith("run_") or target == "load" else None
    for i, s in enumerate(seeds(target, run_dir)):
        (corpus / f"seed-{i}").write_bytes(s)
    read = make_reader(target, work, run_dir)
    allowed = ALLOWED[target]
    findings = folder / "findings.jsonl"

    def record(data: bytes, kind: str, message: str, where: str, tb: str) -> None:
        sha = hashlib.sha1(data).hexdigest()
        (folder / f"finding-{sha}.bin").write_bytes(data)
        with findings.open("a") as f:
            f.write(json.dumps({"kind": kind, "where": where, "message": message[:300],
                                "input": f"finding-{sha}.bin", "traceback": tb[-3000:]}) + "\n")

    def one(data: bytes) -> None:
        start = time.perf_counter()
        try:
            read(data)
        except allowed:
            pass
        except Exception as e:  # everything else is a finding
            record(data, type(e).__name__, str(e), _where(e), traceback.format_exc())
        elapsed = time.perf_counter() - start
        if elapsed > slow:
            record(data, "slow", f"{elapsed:.2f} s for {len(data)} bytes", "-", "")

    budget = [f"-max_total_time={max_seconds}"] if max_seconds > 0 else []
    atheris.Setup([sys.argv[0], f"-runs={runs}", f"-timeout={timeout}", f"-rss_limit_mb={rss_mb}",
                   "-max_len=8192", *budget, f"-artifact_prefix={folder}/", str(corpus)], one)
    atheris.Fuzz()


def replay(target: str, path: Path) -> None:
    """Runs one saved input through a target's reader and shows what it raises."""
    work = _work_dir(target)
    run_dir = make_run_dir(work / "base") if target.startswith("run_") or target == "load" else None
    read = make_reader(target, work, run_dir)
    try:
        read(path.read_bytes())
        print("accepted")
    except ALLOWED[target] as e:
        print(f"refused as documented: {type(e).__name__}: {e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------- parent
def run_target(target: str, runs: int, out: Path, timeout: int, slow: float, rss_mb: int,
               max_seconds: int = 0) -> dict[str, Any]:
    """Runs one target in a child process (``runs`` executions, or fewer if ``max_seconds``
    > 0 runs out first); its executions, coverage and findings."""
    folder = out / target
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    work = _work_dir(target)
    cmd = [sys.executable, __file__, "--child", target, "--runs", str(runs), "--out", str(out),
           "--timeout", str(timeout), "--slow", str(slow), "--rss-mb", str(rss_mb), "--work", str(work),
           "--max-seconds", str(max_seconds)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - start
    (folder / "libfuzzer.log").write_text(proc.stderr)
    stats = re.findall(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)", proc.stderr)
    execs, cov, ft = (int(x) for x in stats[-1]) if stats else (0, 0, 0)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    log = folder / "findings.jsonl"
    if log.exists():
        for line in log.read_text().splitlines():
            f = json.loads(line)
            found.setdefault((f["kind"], f["where"]), {**f, "count": 0})["count"] += 1
    if proc.returncode != 0:  # a libFuzzer crash, timeout or out-of-memory
        reason = next((ln for ln in proc.stderr.splitlines() if "ERROR: libFuzzer" in ln or "ALARM" in ln),
                      proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no output")
        found[("process", reason)] = {"kind": "process", "where": reason, "message": proc.stderr[-2000:],
                                      "input": "crash-* / timeout-* / oom-* artifact", "count": 1}
    return {"target": target, "executions": execs, "cov": cov, "ft": ft, "seconds": seconds,
            "findings": list(found.values()), "returncode": proc.returncode}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| target | executions | coverage (cov / ft) | seconds | findings |",
             "|---|---:|---:|---:|---|"]
    for r in rows:
        f = "; ".join(f"{x['kind']} at {x['where']} (x{x['count']})" for x in r["findings"]) or "none"
        lines.append(f"| {r['target']} | {r['executions']:,} | {r['cov']} / {r['ft']} "
                     f"| {r['seconds']:.0f} | {f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="all", help=f"comma-separated, or 'all': {', '.join(TARGETS)}")
    ap.add_argument("--runs", type=int, default=10_000, help="executions per target")
    ap.add_argument("--out", type=Path, default=None,
                    help="where corpora and findings go (default: a temp dir)")
    ap.add_argument("--table", type=Path, default=None, help="also write the Markdown table here")
    ap.add_argument("--timeout", type=int, default=20, help="libFuzzer's per-input hang limit, seconds")
    ap.add_argument("--slow", type=float, default=2.0, help="an input slower than this is a finding, seconds")
    ap.add_argument("--rss-mb", type=int, default=2048, help="libFuzzer's memory limit, MB")
    ap.add_argument("--max-seconds", type=int, default=0,
                    help="stop a target after this many seconds even if --runs is not reached (0: no limit)")
    ap.add_argument("--child", choices=TARGETS, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--replay", nargs=2, metavar=("TARGET", "INPUT"), help="run one saved input")
    args = ap.parse_args(argv)
    if args.replay:
        replay(args.replay[0], Path(args.replay[1]))
        return 0
    if args.child:
        child(args.child, args.runs, args.out, args.timeout, args.slow, args.rss_mb, args.work,
              args.max_seconds)
        return 0
    targets = list(TARGETS) if args.targets == "all" else args.targets.split(",")
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        ap.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    out = args.out or Path(tempfile.mkdtemp(prefix="seqlab-fuzz-"))
    rows = []
    for t in targets:
        rows.append(run_target(t, args.runs, out, args.timeout, args.slow, args.rss_mb, args.max_seconds))
        r = rows[-1]
        print(f"{t}: {r['executions']} executions, {len(r['findings'])} findings", file=sys.stderr)
    text = table(rows)
    print(text)
    print(f"corpora, findings and libFuzzer logs in {out}")
    if args.table:
        args.table.write_text(text)
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    return 1 if any(r["findings"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
