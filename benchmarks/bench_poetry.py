"""Poetry autoencoder quality: the model beside its baselines, held out by poem.

By default trains the ``small`` preset (hidden 64, 16-d bottleneck) on
``../shared/data/poems.json`` with the real GloVe vectors in ``../shared/data`` (a 50-d,
8,453-word subset), centred and scaled to unit length, for RNN, LSTM and GRU with and
without attention, and reports free-running reconstruction on the held-out poems: token
cosine (centred and on the uncentred vectors) and nearest-word recovery, for the
bottleneck alone and, for attention models, with attention, beside the baselines
(most frequent token, mean vector, 16-d linear autoencoder) on the same chunks.

    python benchmarks/bench_poetry.py                  # all six models, 12 epochs each
    python benchmarks/bench_poetry.py --epochs 4 --cells gru --attention no
    python benchmarks/bench_poetry.py --set code_every_step=false memory_dropout=0   # ablation
    python benchmarks/bench_poetry.py --data default --embeddings fit --preset tiny --seeds 0 1 2
    python benchmarks/bench_poetry.py --original rnn --epochs 5    # the original project's configurations
    python benchmarks/bench_poetry.py --poems 300 --epochs 3 --cells lstm --attention no   # quick screening
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import seqlab
from harness import machine_description, markdown_table
from seqlab.data import PoemCorpus

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# The original project's two configurations, on uncentred word vectors (its token cosine
# was measured there): a vanilla RNN 300 -> 64 -> 16 without attention, cosine loss; an
# LSTM of 512 units with attention, cosine loss. Neither had the presets' linear path or
# word softmax loss.
_PLAIN = {"linear_path": False, "vocab_loss_weight": 0.0, "lr": 2e-3}
ORIGINAL = {
    "rnn": {"cell": "rnn", "hidden_size": 64, "bidirectional": False, "attention": False, **_PLAIN},
    "lstm-attention": {"cell": "lstm", "hidden_size": 512, "bidirectional": False, "attention": True,
                       **_PLAIN},
}


def parse_overrides(items: list[str]) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError:
            overrides[name] = value  # a plain string
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="poems", help="'poems' (../shared/data/poems.json), "
                        "'default' (the recipe's default corpus) or a path")
    parser.add_argument("--embeddings", default="glove", help="'glove' (the 50-d subset in "
                        "../shared/data), 'fit' (word2vec fitted on the training poems) or a path")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--epochs", type=int, default=12, help="0: the preset's own")
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"])
    parser.add_argument("--max-len", type=int, default=30, help="0: the preset's own")
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--attention", nargs="+", default=["no", "yes"], choices=["no", "yes"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--original", choices=sorted(ORIGINAL), default=None,
                        help="run one of the original project's configurations on uncentred vectors "
                        "(ignores --cells and --attention)")
    parser.add_argument("--poems", type=int, default=0,
                        help="screen on a sample of this many poems (drawn with seed 0, the same for "
                        "every run), split as usual; 0: all")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="config overrides, e.g. --set code_every_step=false lr_schedule=constant")
    args = parser.parse_args()
    overrides = parse_overrides(args.set)
    data = {"poems": DATA / "poems.json", "default": None}.get(args.data, args.data)
    embeddings = {"glove": DATA / "glove.6B.50d.subset.txt", "fit": None}.get(args.embeddings,
                                                                             args.embeddings)
    for path in (data, embeddings):
        if path is not None and not Path(path).is_file():
            raise SystemExit(f"needs {path} (the shared real-data folder)")
    if args.poems:
        corpus = seqlab.data.load_poems(data)
        keep = sorted(np.random.default_rng(0).permutation(len(corpus))[: args.poems])
        data = PoemCorpus([corpus[i] for i in keep], corpus.path, corpus.format)
        print(f"screening on {len(data)} of {len(corpus)} poems")
    if embeddings is not None:
        overrides.setdefault("embeddings", str(embeddings))
    if args.epochs:
        overrides.setdefault("epochs", args.epochs)
    if args.max_len:
        overrides.setdefault("max_len", args.max_len)
    if args.threads:
        seqlab.set_num_threads(args.threads)
    print(machine_description(), f"threads {seqlab.get_num_threads()}")
    models = [(c, a == "yes", {}) for c in args.cells for a in args.attention]
    if args.original:
        models = [(ORIGINAL[args.original]["cell"], ORIGINAL[args.original]["attention"],
                   {**ORIGINAL[args.original], "center_embeddings": False, "loss": "cosine"})]
    rows, baseline_rows, curves = [], [], []
    for cell, attention, settings in models:
        for seed in args.seeds:
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                fitted = seqlab.poetry_autoencoder(
                    data if data is None or isinstance(data, PoemCorpus) else str(data), args.preset,
                    out=Path(tmp) / "run", progress=False, verbose=False,
                    **{"cell": cell, "attention": attention, "seed": seed, **overrides, **settings})
                baselines = fitted.baselines()
            seconds = time.perf_counter() - start
            att = "yes" if attention else "no"
            val = [h["val_loss"] for h in fitted.history]
            curves.append((cell, att, seed, " ".join(f"{v:.3f}" for v in val)))
            print(cell, att, seed, "val loss by epoch:", curves[-1][3], flush=True)
            for decoding, res in fitted.evaluation.items():
                rows.append((cell, att, seed, decoding, res["token_cosine"],
                             res["token_cosine_uncentred"], res["sequence_cosine"], res["word_top1"],
                             res["word_top5"], f"{res['bottleneck_active_dims']}/{res['bottleneck_dims']}",
                             res["tokens"], seconds))
                print(rows[-1], flush=True)
            for name, res in baselines.items():
                baseline_rows.append((seed, name, res["token_cosine"], res["token_cosine_uncentred"],
                                      res["sequence_cosine"], res["word_top1"], res["word_top5"],
                                      res["tokens"]))
    print()
    print(markdown_table(["cell", "attention", "seed", "decoding", "token cosine", "uncentred token cosine",
                          "sequence cosine", "word top-1", "word top-5", "active dims", "test tokens",
                          "seconds"], rows))
    print()
    print(markdown_table(["seed", "baseline", "token cosine", "uncentred token cosine", "sequence cosine",
                          "word top-1", "word top-5", "test tokens"],
                         sorted(set(baseline_rows))))
    print()
    print(markdown_table(["cell", "attention", "seed", "validation loss by epoch (free-running)"], curves))


if __name__ == "__main__":
    main()
