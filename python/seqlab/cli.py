"""The ``seqlab`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqlab", description="Sequence models on the CPU.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="train an LSTM on generated sequences and print its loss")
    demo.add_argument("--epochs", type=_positive_int, default=15)
    demo.add_argument("--hidden", type=_positive_int, default=64)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=_positive_int, default=None)
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
    from .recipes import forecaster

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"seqlab {__version__}")
        return 0
    if args.command == "demo":
        from .recipes import sequence_demo

        sequence_demo(epochs=args.epochs, hidden=args.hidden, seed=args.seed, threads=args.threads)
        return 0
    if args.command == "forecast":
        return _forecast(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
