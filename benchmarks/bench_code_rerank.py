"""The code optimizer's decoding re-measured on a trained run, without training again.

Loads a run directory written by ``seqlab.code_optimizer`` (its model and settings),
re-mines or re-reads its data with its settings (the same pairs and split by file: the
mining is deterministic in the seed), refits the n-gram experts on the training split,
chooses the product-of-experts weights of ``bug_fix`` and ``completion`` on the validation
split (:mod:`seqlab.models.code.rerank`) and evaluates the held-out split as the recipe
does: the default modes beside the pure model's beam search and the baselines, each with
its ``n``, and the real edits when given. Prints the chosen weights, a Markdown table and
the CPU seconds (``time.process_time``; one thread unless ``--threads``). Nothing in the
run directory is written.

    python benchmarks/bench_code_rerank.py /tmp/co_default \
        --real-edits ../shared/data/debian_patch_hunks.jsonl

``--train-completions 2`` for runs made before ``Seq2SeqConfig.train_completions`` existed
(their training files gave 2 completion cut points per function, as the held-out ones).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import seqlab
from seqlab.recipes.code_optimizer import KIND, CodeOptimizer, corpus_splits
from seqlab.recipes.run_dir import read_run, resume_data

COLUMNS = ["n", "exact_match", "token_accuracy", "edit_similarity", "parse_rate", "unchanged_rate"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a code optimizer run directory")
    parser.add_argument("--real-edits", default=None, help="a JSONL of real bug_fix edits to score .fix on")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-completions", type=int, default=None,
                        help="completion cut points per function of the training files the run was "
                             "trained with (runs made before the setting existed: 2)")
    args = parser.parse_args()
    seqlab.set_num_threads(args.threads)
    t0 = time.process_time()
    record = read_run(args.run, KIND)
    arguments = record.get("arguments", {})
    fitted = CodeOptimizer.load(args.run)
    data = resume_data(args.run, record, None, False)
    config = fitted.config
    if args.train_completions is not None:
        config = config.with_overrides(train_completions=args.train_completions)
    corpus, splits = corpus_splits(data, arguments.get("task", "all"), arguments.get("lang", "auto"), config)
    saved = json.loads((args.run / "evaluation.json").read_text()).get("data", {}).get("splits")
    now = {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}
    if saved is not None and saved != now:
        raise SystemExit(f"{args.run}: the data now splits into {now}, the run's into {saved}")
    fitted.splits = splits
    fitted.fit_experts(splits.train)
    t1 = time.process_time()
    chosen = fitted.choose_rerankings(splits.val)
    t2 = time.process_time()
    evaluation = fitted.evaluate(real_edits=args.real_edits)
    t3 = time.process_time()
    print(f"{corpus.source}; split {now}")
    print(f"CPU seconds: data and experts {t1 - t0:.1f}, weights on validation {t2 - t1:.1f}, "
          f"evaluation {t3 - t2:.1f}")
    for task, r in chosen.items():
        print(f"{task}: {json.dumps(r)}")
    print("\n| task | row | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for task, rows in evaluation.items():
        for name, s in rows.items():
            if isinstance(s, dict):
                cells = [(f"{s[k]}" + (" (< 200)" if s.get("few_samples") else "")) if k == "n"
                         else ("" if k not in s else f"{s[k]:.3f}") for k in COLUMNS]
                print(f"| {task} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
