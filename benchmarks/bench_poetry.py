"""Poetry autoencoder quality: RNN, LSTM and GRU with and without attention, held out by poem.

Trains the ``small`` preset (hidden 64, 16-d bottleneck) on ``../shared/data/poems.json``
with the real GloVe vectors in ``../shared/data`` (a 50-d, 8,453-word subset), centred and
scaled to unit length, and reports free-running reconstruction on the held-out poems:
token cosine and nearest-word recovery, for the bottleneck alone and, for attention
models, with attention.

    python benchmarks/bench_poetry.py                  # all six models, 12 epochs each
    python benchmarks/bench_poetry.py --epochs 4 --cells gru --attention no
    python benchmarks/bench_poetry.py --set code_every_step=false memory_dropout=0   # ablation
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import seqlab
from harness import machine_description, markdown_table

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"])
    parser.add_argument("--max-len", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--attention", nargs="+", default=["no", "yes"], choices=["no", "yes"])
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="config overrides, e.g. --set code_every_step=false lr_schedule=constant")
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError:
            overrides[name] = value  # a plain string
    poems, glove = DATA / "poems.json", DATA / "glove.6B.50d.subset.txt"
    if not poems.is_file() or not glove.is_file():
        raise SystemExit(f"needs {poems} and {glove} (the shared real-data folder)")
    if args.threads:
        seqlab.set_num_threads(args.threads)
    print(machine_description(), f"threads {seqlab.get_num_threads()}")
    rows, curves = [], []
    for cell in args.cells:
        for attention in (a == "yes" for a in args.attention):
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                fitted = seqlab.poetry_autoencoder(
                    str(poems), "small", out=Path(tmp) / "run", cell=cell, attention=attention,
                    epochs=args.epochs, max_len=args.max_len, embeddings=str(glove), progress=False,
                    verbose=False, **overrides)
            seconds = time.perf_counter() - start
            val = [h["val_loss"] for h in fitted.history]
            curves.append((cell, "yes" if attention else "no", " ".join(f"{v:.3f}" for v in val)))
            print(cell, attention, "val loss by epoch:", curves[-1][2], flush=True)
            for decoding, res in fitted.evaluation.items():
                rows.append((cell, "yes" if attention else "no", decoding, res["token_cosine"],
                             res["sequence_cosine"], res["word_top1"], res["word_top5"],
                             f"{res['bottleneck_active_dims']}/{res['bottleneck_dims']}", seconds))
                print(rows[-1], flush=True)
    print()
    print(markdown_table(["cell", "attention", "decoding", "token cosine", "sequence cosine",
                          "word top-1", "word top-5", "active dims", "seconds"], rows))
    print()
    print(markdown_table(["cell", "attention", "validation loss by epoch (free-running)"], curves))


if __name__ == "__main__":
    main()
