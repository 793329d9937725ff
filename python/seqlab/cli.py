"""The ``seqlab`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


_RESUME_EPOCHS = ("the last epoch to train (default: the preset's); with --resume, training continues up "
                  "to epoch N counted from the run's start (an early-stopped run stays stopped)")
_OTHER_DATA = ("with --resume: continue training on PATH although the run was started on other data "
               "(without it, a resumed run trains on its own data and refuses other data)")


def _add_common(p: argparse.ArgumentParser, out_default: str, resumable: bool = True) -> None:
    p.add_argument("--out", default=None, metavar="DIR",
                   help=f"run directory (default {out_default}); an existing run is never overwritten")
    if resumable:
        p.add_argument("--resume", default=None, metavar="DIR",
                       help="continue the run in DIR from its last checkpoint, on the data it was started on")
        p.add_argument("--other-data", action="store_true", help=_OTHER_DATA)
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="kernel and OpenBLAS threads (default: every core)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqlab", description="Sequence models on the CPU: train, evaluate and report a recipe.",
        epilog="Ctrl-C during training prints the last checkpoint and the --resume command that "
        "continues it.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser(
        "demo", help="a 10-second check that the install works: an LSTM learns to continue noisy sine "
        "waves (generated data, nothing saved) and prints its loss per epoch",
    )
    demo.add_argument("--epochs", type=_positive_int, default=15, help="epochs to train (default 15)")
    demo.add_argument("--hidden", type=_positive_int, default=64, help="LSTM hidden size (default 64)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--threads", type=_positive_int, default=None,
                      help="kernel and OpenBLAS threads (default: every core)")

    poetry = sub.add_parser("poetry", help="train, evaluate and report a poetry autoencoder")
    poetry.add_argument("path", nargs="?", default=None,
                        help="file of poems (default: Debian's fortunes songs-poems; with --resume: "
                        "the run's)")
    poetry.add_argument("--preset", default=None,
                        choices=["tiny", "small", "medium", "large", "xlarge", "research"],
                        help="model size and training budget (default small; see "
                        "seqlab.models.poetry.config.PRESETS)")
    poetry.add_argument("--epochs", type=_positive_int, default=None, metavar="N", help=_RESUME_EPOCHS)
    poetry.add_argument("--seed", type=int, default=None, help="random seed of split, weights and batches")
    poetry.add_argument("--cell", choices=["rnn", "lstm", "gru"], default=None,
                        help="recurrent cell of encoder and decoder (default: the preset's)")
    poetry.add_argument("--attention", action="store_true", default=None,
                        help="decoder attends over the encoder states (8 heads)")
    poetry.add_argument("--bottleneck", type=_positive_int, default=None,
                        help="size of the code between encoder and decoder (default 16)")
    poetry.add_argument("--embeddings", default=None,
                        help="GloVe or word2vec text file of word vectors (default: word2vec fitted on the "
                        "training poems)")
    _add_common(poetry, "runs/poetry_autoencoder-<time>")
    poetry.add_argument("--no-progress", action="store_true", help="no progress bars")

    vec = sub.add_parser(
        "vectors", help="train a next-vector predictor and print Hit@K beside the baselines"
    )
    vec.add_argument("path", nargs="?", default=None,
                     help=".npz of vectors with chain_offsets or chain_ids, or a folder of .txt/.md "
                     "documents (default: Python's standard library documentation; with --resume: "
                     "the run's)")
    vec.add_argument("--preset", default=None, help="named configuration (default 'default'; see "
                     "seqlab.models.vectors.config.PRESETS)")
    vec.add_argument("--context", type=_positive_int, default=None,
                     help="vectors read per prediction (default 100)")
    vec.add_argument("--cell", choices=["gru", "lstm", "transformer"], default=None,
                     help="sequence model (default gru)")
    vec.add_argument("--hidden", type=_positive_int, default=None, help="hidden size (default 256)")
    vec.add_argument("--epochs", type=_positive_int, default=None, metavar="N", help=_RESUME_EPOCHS)
    vec.add_argument("--encoder", choices=["tfidf", "minilm"], default=None,
                     help="text encoder for documents (default tfidf)")
    vec.add_argument("--hard-negatives", type=int, default=None, metavar="K",
                     help="mined hard negatives per target (default 0)")
    vec.add_argument("--seed", type=int, default=None, help="random seed of split, weights and batches")
    _add_common(vec, "runs/vector_predictor-<time>")
    vec.add_argument("--no-progress", action="store_true", help="no progress bars")

    fc = sub.add_parser(
        "forecast", help="fit a forecaster (LSTM, TCN, N-BEATS) and print its test scores"
    )
    fc.add_argument("path", nargs="?", default=None,
                    help="CSV series, JSON Lines/JSON event file or co2/sunspots/nile "
                    "(default: synthetic events; with --resume: the run's)")
    fc.add_argument("--model", choices=["nbeats", "tcn", "lstm", "auto"], default="nbeats",
                    help="model to fit; auto searches among the three with Optuna (default nbeats)")
    fc.add_argument("--horizon", type=_positive_int, default=24, help="steps to forecast (default 24)")
    fc.add_argument("--input-size", type=_positive_int, default=96,
                    help="steps of history each forecast reads (default 96)")
    fc.add_argument(
        "--target", default=None, help="column to forecast (default: latency_ms or the last column)"
    )
    fc.add_argument("--preset", choices=["tiny", "small", "paper"], default="small",
                    help="model size and training budget (default small)")
    fc.add_argument("--epochs", type=_positive_int, default=None, metavar="N", help=_RESUME_EPOCHS)
    fc.add_argument(
        "--tune", type=_positive_int, default=None, metavar="TRIALS", help="Optuna trials to run first"
    )
    fc.add_argument("--method", choices=["random", "grid", "bayesian", "hyperband"], default="bayesian",
                    help="search method of --tune (default bayesian: Optuna's TPE)")
    fc.add_argument("--storage", default=None, help="Optuna storage URL shared by several workers")
    fc.add_argument(
        "--skip-bad-events", action="store_true", help="skip malformed events instead of stopping"
    )
    fc.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_common(fc, "none: nothing is saved")
    return parser


def _run_recipe(command: str, fn: Callable[[], Any]) -> int:
    """Runs a recipe; its errors become one line on stderr (exit 1), Ctrl-C one line with the
    resume command (exit 130)."""
    from .recipes.run_dir import RunError

    try:
        fn()
    except KeyboardInterrupt as e:
        text = e.for_cli() if isinstance(e, RunError) else "interrupted"
        print(f"seqlab {command}: {text}", file=sys.stderr)
        return 130
    except (OSError, ValueError, TypeError, ImportError) as e:
        text = e.for_cli() if isinstance(e, RunError) else str(e)
        print(f"seqlab {command}: error: {text}", file=sys.stderr)
        return 1
    return 0


def _forecast(args: argparse.Namespace) -> int:
    from .recipes.forecast import forecaster

    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    return _run_recipe("forecast", lambda: forecaster(
        args.path, model=args.model, horizon=args.horizon, input_size=args.input_size, target=args.target,
        preset=args.preset, tune=args.tune, method=args.method, storage=args.storage,
        on_error="skip" if args.skip_bad_events else "raise", out_dir=args.out, seed=args.seed,
        threads=args.threads, resume=args.resume, other_data=args.other_data, **overrides))


def _vectors(args: argparse.Namespace) -> int:
    from . import set_num_threads
    from .recipes.vectors import vector_predictor

    if args.threads:
        set_num_threads(args.threads)
    names = {"hidden": "hidden_size", "epochs": "epochs", "encoder": "encoder",
             "hard_negatives": "hard_negatives", "seed": "seed"}
    overrides = {key: getattr(args, arg) for arg, key in names.items() if getattr(args, arg) is not None}
    return _run_recipe("vectors", lambda: vector_predictor(
        args.path, context=args.context, cell=args.cell, preset=args.preset, out=args.out, resume=args.resume,
        other_data=args.other_data, progress=False if args.no_progress else None, **overrides))


def _poetry(args: argparse.Namespace) -> int:
    from . import set_num_threads
    from .recipes.poetry import poetry_autoencoder

    if args.threads:
        set_num_threads(args.threads)
    overrides = {k: getattr(args, k) for k in ("epochs", "seed", "cell", "attention", "bottleneck",
                                               "embeddings") if getattr(args, k) is not None}
    return _run_recipe("poetry", lambda: poetry_autoencoder(
        args.path, args.preset, out=args.out, resume=args.resume, other_data=args.other_data,
        progress=False if args.no_progress else None, **overrides))


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
        return _poetry(args)
    if args.command == "forecast":
        return _forecast(args)
    if args.command == "vectors":
        return _vectors(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
