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
    return parser


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
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
