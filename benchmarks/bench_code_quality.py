"""Code optimizer quality per CPU second: one ``seqlab.code_optimizer`` run on the default
corpus capped to fewer pairs, for bounded experiments with the preset's settings.

The default corpus (``load_code_data(None)``) is mined with the run's ``unit_len`` and
``mutants``, capped to ``--max-pairs`` pairs per task and language (or ``--cap`` per task,
JSON), and handed to ``code_optimizer`` as pairs (so the split by file, the baselines and
the held-out sample counts are the recipe's). Prints and appends to ``--log`` one JSON
line: CPU seconds of mining, training and evaluation (``time.process_time``: one thread by
default, so CPU seconds are the work done whatever the machine's load), and per task and
row ``[n, exact_match, edit_similarity]``. The full-size cost on 2 quiet cores is
estimated from these CPU seconds, scaled by the padded target tokens of an epoch.

    python benchmarks/bench_code_quality.py --name u40 --max-pairs 600 --config '{"unit_len": 40}'
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path
from typing import Any

import seqlab
from seqlab.data.code import load_code_data

# the module (``seqlab.recipes.code_optimizer`` the attribute is the function)
RECIPE = importlib.import_module("seqlab.recipes.code_optimizer")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", required=True, help="the run's name (its run directory under --runs)")
    parser.add_argument("--max-pairs", type=int, default=600, help="pairs per task and language")
    parser.add_argument("--cap", default=None, help='per-task caps, JSON: {"bug_fix": 1200, ...}')
    parser.add_argument("--config", default="{}", help="Seq2SeqConfig overrides, JSON")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--real-edits", default=None, help="a JSONL of real edits (default: the recipe's, Debian's hunks)"
    )
    parser.add_argument("--runs", default="/tmp/code_quality_runs")
    parser.add_argument("--log", default=None, help="append the JSON line to this file")
    args = parser.parse_args()
    over: dict[str, Any] = json.loads(args.config)
    seqlab.set_num_threads(args.threads)
    t0 = time.process_time()
    cap = json.loads(args.cap) if args.cap else args.max_pairs
    data = {k: over[k] for k in ("unit_len", "mutants") if k in over}
    corpus = load_code_data(None, max_pairs=cap, seed=over.get("seed", 0), **data)
    t1 = time.process_time()
    marks: dict[str, float] = {}
    evaluate = RECIPE.CodeOptimizer.evaluate

    def timed(self: Any, *a: Any, **k: Any) -> Any:
        marks.setdefault("train_end", time.process_time())
        return evaluate(self, *a, **k)

    RECIPE.CodeOptimizer.evaluate = timed
    fitted = RECIPE.code_optimizer(corpus.pairs, out=Path(args.runs) / args.name, real_edits=args.real_edits,
                                   progress=False, verbose=False, **over)
    t2 = time.process_time()
    history = json.loads((Path(args.runs) / args.name / "training_metrics.json").read_text())
    result: dict[str, Any] = {
        "name": args.name, "cap": cap, "config": over, "threads": args.threads,
        "cpu_data": round(t1 - t0, 1), "cpu_train": round(marks["train_end"] - t1, 1),
        "cpu_eval": round(t2 - marks["train_end"], 1), "best": history["best"],
        "train_pairs": len(fitted.splits.train),
    }
    for task, rows in fitted.evaluation.items():
        for row, s in rows.items():
            if isinstance(s, dict):
                result[f"{task}/{row}"] = [s["n"], round(s["exact_match"], 3), round(s["edit_similarity"], 3)]
    line = json.dumps(result)
    print(line)
    if args.log:
        with open(args.log, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
