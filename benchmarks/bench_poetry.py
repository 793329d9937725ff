"""Poetry autoencoder quality: RNN, LSTM and GRU with and without attention, held out by poem.

Trains the ``small`` preset (hidden 64, 16-d bottleneck) on ``../shared/data/poems.json``
with the real GloVe vectors in ``../shared/data`` (a 50-d, 8,453-word subset), centred and
scaled to unit length, and reports free-running reconstruction on the held-out poems:
token cosine and nearest-word recovery, for the bottleneck alone and, for attention
models, with attention.

    python benchmarks/bench_poetry.py                  # all six models, 12 epochs each
    python benchmarks/bench_poetry.py --epochs 4 --cells gru
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    poems, glove = DATA / "poems.json", DATA / "glove.6B.50d.subset.txt"
    if not poems.is_file() or not glove.is_file():
        raise SystemExit(f"needs {poems} and {glove} (the shared real-data folder)")
    print(machine_description(), f"threads {seqlab.get_num_threads()}")
    rows = []
    for cell in args.cells:
        for attention in (False, True):
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                fitted = seqlab.poetry_autoencoder(
                    str(poems), "small", out=Path(tmp) / "run", cell=cell, attention=attention,
                    epochs=args.epochs, max_len=args.max_len, embeddings=str(glove), progress=False,
                    verbose=False)
            seconds = time.perf_counter() - start
            for decoding, res in fitted.evaluation.items():
                rows.append((cell, "yes" if attention else "no", decoding, res["token_cosine"],
                             res["sequence_cosine"], res["word_top1"], res["word_top5"],
                             f"{res['bottleneck_active_dims']}/{res['bottleneck_dims']}", seconds))
                print(rows[-1], flush=True)
    print()
    print(markdown_table(["cell", "attention", "decoding", "token cosine", "sequence cosine",
                          "word top-1", "word top-5", "active dims", "seconds"], rows))


if __name__ == "__main__":
    main()
