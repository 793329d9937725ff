"""Code optimizer baselines on the default corpus's held-out files and on real edits.

The default corpus (the running interpreter's standard library and the C functions under
/usr/include, capped as ``seqlab.data.code.load_code_data(None)`` caps it) is split by file
80/10/10; the baselines are fitted on the training files and scored on the test files:
``bug_fix`` unchanged and the 4-gram reranker, ``completion`` the 4-gram completer,
``generation`` the nearest training body. Then the real edits of
``../shared/data/debian_patch_hunks.jsonl`` (never trained on): unchanged and the reranker
fitted on the training split's C pairs.

    python benchmarks/bench_code_baselines.py --markdown
    python benchmarks/bench_code_baselines.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from harness import machine_description, markdown_table
from seqlab.data.code import load_code_data, split_by_file
from seqlab.models.code import baseline_scores, real_edit_scores

HUNKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "debian_patch_hunks.jsonl"
COLUMNS = ("exact_match", "token_accuracy", "edit_similarity", "parse_rate", "unchanged_rate")


def _rows(label: str, scores: dict[str, dict]) -> list[list[object]]:
    rows = []
    for name, s in scores.items():
        n = f"{s['n']}" + (" (< 200)" if s["few_samples"] else "")
        rows.append([label, name, n, *(s.get(c, "") for c in COLUMNS)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--order", type=int, default=4, help="n-gram order")
    parser.add_argument("--lang", default="auto", help="python, c or auto (both)")
    parser.add_argument("--hunks", type=Path, default=HUNKS)
    parser.add_argument("--json", type=Path, default=None, help="write all scores here")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    t0 = time.perf_counter()
    corpus = load_code_data(None, lang=args.lang, seed=args.seed)
    splits = split_by_file(corpus.pairs, seed=args.seed)
    t_data = time.perf_counter() - t0
    results: dict[str, object] = {
        "corpus": corpus.source,
        "pairs": corpus.counts(),
        "split": {name: len(p) for name, p in splits.items()},
        "duplicates_removed": splits.duplicates_removed,
        "seconds_data": round(t_data, 1),
    }
    per_lang = {"python+c": baseline_scores(splits.train, splits.test, args.order)}
    for lang in ("python", "c"):
        test = [p for p in splits.test if p.lang == lang]
        if test:
            per_lang[lang] = baseline_scores(splits.train, test, args.order)
    results["held_out"] = per_lang
    if args.hunks.is_file():
        train_c = [p for p in splits.train if p.lang == "c"]
        results["debian_patch_hunks"] = real_edit_scores(args.hunks, train_c, order=args.order)
    results["seconds_total"] = round(time.perf_counter() - t0, 1)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.markdown:
        print(machine_description())
        print(
            f"\n{results['corpus']}; pairs {results['pairs']}; split {results['split']}; "
            f"duplicates removed {results['duplicates_removed']}\n"
        )
        rows = []
        for lang, tasks in per_lang.items():
            for task, scores in tasks.items():
                rows += _rows(f"{lang} {task} (held-out files)", scores)
        if "debian_patch_hunks" in results:
            rows += _rows("C bug_fix, Debian patch hunks (real edits)", results["debian_patch_hunks"])  # type: ignore[arg-type]
        print(markdown_table(["data", "baseline", "n", *COLUMNS], rows))
    else:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
