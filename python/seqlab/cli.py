"""The ``seqlab`` command."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .models.poetry.config import PRESETS, describe_preset

    parser = argparse.ArgumentParser(prog="seqlab", description="Sequence models on the CPU.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="train an LSTM on generated sequences and print its loss")
    demo.add_argument("--epochs", type=_positive_int, default=15)
    demo.add_argument("--hidden", type=_positive_int, default=64)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=_positive_int, default=None)

    poetry = sub.add_parser("poetry", help="train, evaluate and report a poetry autoencoder",
                            epilog="presets:\n" + "\n".join(
                                textwrap.fill(describe_preset(n), 96, initial_indent="  ",
                                              subsequent_indent="      ") for n in PRESETS),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    poetry.add_argument("path", nargs="?", default=None,
                        help="file of poems (default: Debian's fortunes songs-poems)")
    poetry.add_argument("--preset", default="small", choices=list(PRESETS),
                        help="model size and training budget (default small; each is described below)")
    poetry.add_argument("--epochs", type=_positive_int, default=None)
    poetry.add_argument("--seed", type=int, default=None)
    poetry.add_argument("--cell", choices=["rnn", "lstm", "gru"], default=None)
    poetry.add_argument("--attention", action="store_true", default=None,
                        help="decoder attends over the encoder states (8 heads)")
    poetry.add_argument("--bottleneck", type=_positive_int, default=None)
    poetry.add_argument("--embeddings", default=None, help="GloVe or word2vec text file of word vectors")
    poetry.add_argument("--out", default=None, help="run directory (default runs/poetry_autoencoder-<time>)")
    poetry.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    poetry.add_argument("--threads", type=_positive_int, default=None)
    poetry.add_argument("--no-progress", action="store_true", help="no progress bars")

    vec = sub.add_parser(
        "vectors", help="train a next-vector predictor and print Hit@K beside the baselines"
    )
    vec.add_argument("path", nargs="?", default=None,
                     help=".npz of vectors with chain_offsets or chain_ids, or a folder of .txt/.md "
                     "documents (default: Python's standard library documentation)")
    vec.add_argument("--context", type=_positive_int, default=100, help="vectors read per prediction")
    vec.add_argument("--cell", choices=["gru", "lstm", "transformer"], default="gru")
    vec.add_argument("--hidden", type=_positive_int, default=None, help="hidden size (default 256)")
    vec.add_argument("--epochs", type=_positive_int, default=None)
    vec.add_argument("--encoder", choices=["tfidf", "minilm"], default=None,
                     help="text encoder for documents (default tfidf)")
    vec.add_argument("--hard-negatives", type=int, default=None, metavar="K",
                     help="mined hard negatives per target (default 0)")
    vec.add_argument("--out", default=None, help="run directory (default runs/vector_predictor-<time>)")
    vec.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    vec.add_argument("--seed", type=int, default=None)
    vec.add_argument("--threads", type=_positive_int, default=None)
    vec.add_argument("--no-progress", action="store_true", help="no progress bars")

    fc = sub.add_parser(
        "forecast", help="fit a forecaster (LSTM, TCN, N-BEATS) and print its test scores"
    )
    fc.add_argument("path", nargs="?", default=None,
                    help="CSV series, JSON Lines/JSON event file or co2/sunspots/nile "
                    "(default: synthetic events)")
    fc.add_argument("--model", choices=["nbeats", "tcn", "lstm", "auto"], default="nbeats")
    fc.add_argument("--horizon", type=_positive_int, default=24)
    fc.add_argument("--input-size", type=_positive_int, default=96)
    fc.add_argument(
        "--target", default=None, help="column to forecast (default: latency_ms or the last column)"
    )
    fc.add_argument("--preset", choices=["tiny", "small", "paper"], default="small")
    fc.add_argument("--epochs", type=_positive_int, default=None)
    fc.add_argument(
        "--tune", type=_positive_int, default=None, metavar="TRIALS", help="Optuna trials to run first"
    )
    fc.add_argument("--method", choices=["random", "grid", "bayesian", "hyperband"], default="bayesian")
    fc.add_argument("--storage", default=None, help="Optuna storage URL shared by several workers")
    fc.add_argument(
        "--skip-bad-events", action="store_true", help="skip malformed events instead of stopping"
    )
    fc.add_argument("--out", default=None, help="directory to save the forecaster and its evaluation")
    fc.add_argument("--seed", type=int, default=0)
    fc.add_argument("--threads", type=_positive_int, default=None)
    return parser


def _forecast(args: argparse.Namespace) -> int:
    from .recipes.forecast import forecaster

    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    try:
        forecaster(args.path, model=args.model, horizon=args.horizon, input_size=args.input_size,
                   target=args.target, preset=args.preset, tune=args.tune, method=args.method,
                   storage=args.storage, on_error="skip" if args.skip_bad_events else "raise",
                   out_dir=args.out, seed=args.seed, threads=args.threads, **overrides)
    except (OSError, ValueError, ImportError) as e:
        print(f"seqlab forecast: error: {e}", file=sys.stderr)
        return 1
    return 0


def _vectors(args: argparse.Namespace) -> int:
    from . import set_num_threads
    from .recipes.vectors import vector_predictor

    if args.threads:
        set_num_threads(args.threads)
    names = {"hidden": "hidden_size", "epochs": "epochs", "encoder": "encoder",
             "hard_negatives": "hard_negatives", "seed": "seed"}
    overrides = {key: getattr(args, arg) for arg, key in names.items() if getattr(args, arg) is not None}
    try:
        vector_predictor(args.path, context=args.context, cell=args.cell, out=args.out, resume=args.resume,
                         progress=False if args.no_progress else None, **overrides)
    except (OSError, ValueError, TypeError, ImportError) as e:
        print(f"seqlab vectors: error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"seqlab {__version__}")
        return 0
    if args.command == "demo":
        from .recipes.demo import sequence_demo

        sequence_demo(epochs=args.epochs, hidden=args.hidden, seed=args.seed, threads=args.threads)
        return 0
    if args.command == "poetry":
        from . import set_num_threads
        from .recipes.poetry import poetry_autoencoder

        if args.threads:
            set_num_threads(args.threads)
        overrides = {k: getattr(args, k) for k in ("epochs", "seed", "cell", "attention", "bottleneck",
                                                   "embeddings") if getattr(args, k) is not None}
        try:
            poetry_autoencoder(args.path, args.preset, out=args.out, resume=args.resume,
                               progress=False if args.no_progress else None, **overrides)
        except (FileNotFoundError, FileExistsError, ValueError, ImportError) as e:
            print(f"seqlab poetry: {e}", file=sys.stderr)
            return 1
        return 0

    if args.command == "forecast":
        return _forecast(args)
    if args.command == "vectors":
        return _vectors(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
