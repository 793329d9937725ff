"""Hit@K of the next-vector predictor on the default corpus, beside the baselines.

Python's standard library documentation (one chain of paragraphs per module, embedded by
TF-IDF + truncated SVD fitted on the training modules), split by module 80/10/10, every
test window scored against a bank of every test vector. The corpus is prepared once; each
configuration then trains with early stopping on validation Hit@5 (patience 3).

    python benchmarks/bench_vector_quality.py --markdown
    python benchmarks/bench_vector_quality.py --configs '{}' '{"lr": 1e-3}'
    python benchmarks/bench_vector_quality.py --configs '{}' '{"seed": 1}' '{"seed": 2}' --markdown
    python benchmarks/bench_vector_quality.py --encoder minilm --markdown   # all-MiniLM-L6-v2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import seqlab
import seqlab.recipes.vectors as recipe
from harness import machine_description, markdown_table
from seqlab.models.vectors.config import VectorPredictorConfig
from seqlab.models.vectors.dataset import prepare

DEFAULT_CONFIGS = [
    {},
    {"cell": "lstm"},
    {"cell": "transformer", "num_layers": 2},
    {"lr": 1e-3},
    {"lr": 1e-3, "infonce_weight": 0.2},
    {"lr": 1e-3, "cross_segment_negatives": False},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=None, help="JSON overrides, one per run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoder", choices=["tfidf", "minilm"], default="tfidf")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    configs = [json.loads(c) for c in args.configs] if args.configs else DEFAULT_CONFIGS
    seqlab.set_num_threads(args.threads)
    start = time.perf_counter()
    data = prepare(None, VectorPredictorConfig(encoder=args.encoder), verbose=False)
    prepare_seconds = time.perf_counter() - start
    recipe.prepare = lambda *_a, **_k: data  # every run trains on the same prepared corpus
    rows = []
    baselines_done = False
    with tempfile.TemporaryDirectory() as tmp:
        for i, overrides in enumerate(configs):
            t0 = time.perf_counter()
            p = recipe.vector_predictor(out=Path(tmp) / f"run{i}", verbose=False, progress=False,
                                        encoder=args.encoder, **overrides)
            seconds = time.perf_counter() - t0
            e = p.evaluate()
            if not baselines_done:
                for name in ("copy_last", "context_mean", "linear"):
                    r = e[name]
                    rows.append([name, "", r["hit@1"], r["hit@5"], r["hit@10"], r["mrr"],
                                 r["contrastive_accuracy"], "", ""])
                baselines_done = True
            r = e["model"]
            label = "defaults" if not overrides else ", ".join(f"{k}={v}" for k, v in overrides.items())
            rows.append(["model", label, r["hit@1"], r["hit@5"], r["hit@10"], r["mrr"],
                         r["contrastive_accuracy"], len(p.history), round(seconds, 1)])
            print(json.dumps({"settings": label, **{k: e[k]["hit@5"] for k in e if isinstance(e[k], dict)},
                              "mrr": {k: e[k]["mrr"] for k in e if isinstance(e[k], dict)},
                              "epochs": len(p.history), "seconds": seconds, "kept_epoch": p.best_epoch,
                              "mix": [round(float(w), 3) for w in p.model.mix],
                              "val_hit@5_by_epoch": [round(h.get("val_hit@5", float("nan")), 4)
                                                     for h in p.history]}), flush=True)
    header = ["predictor", "settings", "Hit@1", "Hit@5", "Hit@10", "MRR", "contrastive acc.", "epochs",
              "train s"]
    print(machine_description())
    print(f"{data.summary()}; prepared in {prepare_seconds:.1f}s")
    print(data.gates.summary())
    if args.markdown:
        print(markdown_table(header, rows))
    else:
        for row in rows:
            print("  ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))


if __name__ == "__main__":
    main()
