"""The ``seqlab`` command."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
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
    from .models.poetry.config import PRESETS, describe_preset

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

    poetry = sub.add_parser("poetry", help="train, evaluate and report a poetry autoencoder",
                            epilog="presets:\n" + "\n".join(
                                textwrap.fill(describe_preset(n), 96, initial_indent="  ",
                                              subsequent_indent="      ") for n in PRESETS),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    poetry.add_argument("path", nargs="?", default=None,
                        help="file of poems (default: Debian's fortunes songs-poems; with --resume: "
                        "the run's)")
    poetry.add_argument("--preset", default=None, choices=list(PRESETS),
                        help="model size and training budget (default small; each is described below)")
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
    vec.add_argument("--preset", choices=["default", "original"], default=None,
                     help="default: a learning rate from the optimizer steps the corpus allows, after a "
                     "warmup; original: the original project's constant 1e-4")
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
    fc.add_argument("--input-size", type=_positive_int, default=None,
                    help="steps of history each forecast reads (default 96; 168 with --model auto)")
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
    fc.add_argument("--storage", default=None,
                    help="Optuna storage of the search: journal file, postgresql:// URL or SQLite file")
    fc.add_argument(
        "--skip-bad-events", action="store_true", help="skip malformed events instead of stopping"
    )
    fc.add_argument(
        "--baseline-origins", type=int, default=None, metavar="N",
        help="test origins at which the Holt-Winters baseline is refitted (default 20; 0: leave it out)",
    )
    fc.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_common(fc, "none: nothing is saved")

    code = sub.add_parser(
        "code", help="train a code optimizer (bug fixing, line completion, generation) and print its "
        "held-out exact match beside the baselines"
    )
    code.add_argument("path", nargs="?", default=None,
                      help="folder of .py/.c/.h sources, one source file or a JSON Lines file of "
                      "{task, source, target} pairs (default: the standard library and the C headers on "
                      "this machine; with --resume: the run's)")
    code.add_argument("--task", choices=["all", "bug_fix", "completion", "generation"], default="all",
                      help="task to train and evaluate (default all three)")
    code.add_argument("--lang", choices=["auto", "python", "c"], default="auto",
                      help="language of the sources (default auto: both, per file suffix or record)")
    code.add_argument("--preset", choices=["tiny", "small", "medium", "original"], default=None,
                      help="model size and training budget (default small; original is the original "
                      "project's configuration)")
    code.add_argument("--epochs", type=_positive_int, default=None, metavar="N", help=_RESUME_EPOCHS)
    code.add_argument("--seed", type=int, default=None,
                      help="random seed of mining, split, weights and batches (default 0)")
    _add_common(code, "runs/code_optimizer-<time>")
    code.add_argument("--no-progress", action="store_true", help="no progress bars")

    tn = sub.add_parser(
        "tune",
        help="search a forecaster's hyperparameters with Optuna, alone or as a worker of a shared study",
    )
    tn.add_argument("path", nargs="?", default=None,
                    help="CSV series, event file or co2/sunspots/nile (default: synthetic events)")
    tn.add_argument("--model", choices=["nbeats", "tcn", "lstm", "auto"], default="tcn",
                    help="model to search; auto searches the model too (default tcn)")
    tn.add_argument("--method", choices=["random", "grid", "bayesian", "hyperband"], default="bayesian",
                    help="search method (default bayesian: Optuna's TPE)")
    tn.add_argument("--trials", type=_positive_int, default=None,
                    help="trials this command adds, split between its --workers (default 20 unless "
                    "--max-trials or --timeout)")
    tn.add_argument("--max-trials", type=_positive_int, default=None,
                    help="no worker starts a trial once the study holds this many finished ones")
    tn.add_argument("--timeout", type=float, default=None, help="stop starting trials after these seconds")
    tn.add_argument("--storage", default=None,
                    help="journal file (one host), postgresql:// URL (many hosts) or SQLite file "
                    "(one process)")
    tn.add_argument("--study-name", default=None,
                    help="study to create or join (default seqlab-<model>-<method>)")
    tn.add_argument("--workers", type=_positive_int, default=1, help="local worker processes on the study")
    tn.add_argument("--worker-index", type=int, default=0,
                    help="this worker's index among --workers (set for the processes seqlab tune starts)")
    tn.add_argument("--heartbeat", type=float, default=60.0,
                    help="seconds between heartbeats on a database; a silent worker's trial fails after 2x")
    tn.add_argument("--horizon", type=_positive_int, default=24, help="steps to forecast (default 24)")
    tn.add_argument("--input-size", type=_positive_int, default=96,
                    help="steps of history each forecast reads (default 96; 168 with --model auto)")
    tn.add_argument("--target", default=None, help="column to forecast (default: the last column)")
    tn.add_argument("--preset", choices=["tiny", "small", "paper"], default="small",
                    help="base model size and training budget of each trial (default small)")
    tn.add_argument("--epochs", type=_positive_int, default=None,
                    help="epochs per trial (default: the preset's)")
    tn.add_argument("--seed", type=int, default=0, help="sampler seed (worker i of --workers uses seed + i)")
    tn.add_argument("--no-refit", action="store_true", help="do not train the best configuration again")
    tn.add_argument("--out", default=None, help="directory for trials.csv/json, the plot and the best model")
    tn.add_argument("--threads", type=_positive_int, default=None,
                    help="kernel and OpenBLAS threads per worker (default: the cores split between workers)")
    lm = sub.add_parser("code-lm", help="train a GPT on a folder of code; bits per byte and compile rate")
    lm.add_argument("path", nargs="?", default=None,
                    help="folder of source code (default: the C headers and sources in /usr/include; "
                    "with --resume: the run's)")
    lm.add_argument("--preset", choices=["tiny", "small", "original"], default=None,
                    help="model size and training budget: tiny (seconds), small (default: minutes), "
                    "original (the original project's 6-layer, 8-head, 50k-token model)")
    lm.add_argument("--epochs", type=_positive_int, default=None, metavar="N", help=_RESUME_EPOCHS)
    lm.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                    help="GEMM precision of the linear layers (default fp32; bf16: bf16 operands, "
                    "fp32 accumulation, where the CPU has AVX512_BF16)")
    lm.add_argument("--extensions", default=None, help="comma-separated file extensions (default .c,.h)")
    lm.add_argument("--seed", type=int, default=None, help="random seed (default: the preset's)")
    _add_common(lm, "runs/code_lm-<time>")
    lm.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _tune_worker_argv(args: argparse.Namespace, storage: str, study_name: str, index: int,
                      trials: int | None) -> list[str]:
    argv = ["tune", *([args.path] if args.path else []), "--model", args.model, "--method", args.method,
            "--storage", storage, "--study-name", study_name, "--worker-index", str(index), "--no-refit",
            "--heartbeat", str(args.heartbeat), "--horizon", str(args.horizon),
            "--input-size", str(args.input_size), "--preset", args.preset, "--seed", str(args.seed)]
    for flag, value in (("--trials", trials), ("--max-trials", args.max_trials), ("--timeout", args.timeout),
                        ("--target", args.target), ("--epochs", args.epochs), ("--threads", args.threads)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def _tune(args: argparse.Namespace) -> int:
    import os
    import tempfile
    from pathlib import Path

    from .models.forecast.config import preset
    from .tune.search import search
    from .tune.storage import open_storage
    from .tune.workers import run_local_workers, trial_shares

    trials = args.trials
    if trials is None and args.max_trials is None and args.timeout is None:
        trials = 20
    target: str | int = -1
    if args.target is not None:
        target = int(args.target) if args.target.lstrip("-").isdigit() else args.target
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    base = preset(args.preset, "nbeats" if args.model == "auto" else args.model, seed=args.seed, **overrides)
    study_name = args.study_name or f"seqlab-{args.model}-{args.method}"
    common = dict(model=args.model, data=args.path, method=args.method, study_name=study_name,
                  input_size=args.input_size, horizon=args.horizon, target=target, base=base,
                  heartbeat=args.heartbeat, out_dir=args.out)
    try:
        if args.threads:
            from . import set_num_threads

            set_num_threads(args.threads)
        if args.workers == 1:
            result = search(trials=trials, timeout=args.timeout, max_trials=args.max_trials,
                            storage=args.storage, seed=args.seed + args.worker_index,
                            refit=not args.no_refit, **common)
        else:
            storage = args.storage or str(
                Path(args.out or tempfile.mkdtemp(prefix="seqlab-tune-")) / "study.journal"
            )
            import optuna

            shared = open_storage(storage, args.heartbeat)
            if isinstance(shared, str) and shared.startswith("sqlite"):
                raise ValueError(f"--storage {storage}: SQLite is for one process at a time; give "
                                 "several workers a journal file (e.g. study.journal) or a postgresql:// URL")
            # the study (and a database's tables) exist before the workers race to join it
            optuna.create_study(study_name=study_name, storage=shared, direction="minimize",
                                load_if_exists=True)
            shares = trial_shares(trials, args.workers)
            threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
            run_local_workers(
                [_tune_worker_argv(args, storage, study_name, i, n) for i, n in enumerate(shares) if n != 0],
                threads,
            )
            finished = optuna.load_study(study_name=study_name, storage=shared).get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            )
            if not finished:
                raise RuntimeError(f"study {study_name!r} in {storage}: no trial finished")
            # every worker is done: collect the study (no new trial) and refit its best
            result = search(trials=None, max_trials=max(len(finished), 1), storage=storage, seed=args.seed,
                            refit=not args.no_refit, **common)
    except (OSError, ValueError, ImportError, RuntimeError) as e:
        print(f"seqlab tune: error: {e}", file=sys.stderr)
        return 1
    states: dict[str, int] = {}
    for row in result.trials:
        states[row["state"]] = states.get(row["state"], 0) + 1
    counts = ", ".join(f"{n} {k.lower()}" for k, n in sorted(states.items()))
    print(f"study {study_name!r}: {len(result.trials)} trials ({counts}); "
          f"best {result.best_params} (val mse {result.best_value:.4g}, scaled)")
    return 0


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


def _code_lm(args: argparse.Namespace) -> int:
    from . import set_num_threads
    from .recipes.code_lm import code_lm

    if args.threads:
        set_num_threads(args.threads)
    overrides: dict[str, Any] = {
        k: getattr(args, k) for k in ("epochs", "seed", "precision") if getattr(args, k) is not None
    }
    if args.extensions:
        overrides["extensions"] = tuple(e.strip() for e in args.extensions.split(",") if e.strip())
    return _run_recipe("code-lm", lambda: code_lm(
        args.path, args.preset, out=args.out, resume=args.resume, other_data=args.other_data,
        progress=False if args.no_progress else None, **overrides))


def _forecast(args: argparse.Namespace) -> int:
    from .recipes.forecast import forecaster

    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    return _run_recipe("forecast", lambda: forecaster(
        args.path, model=args.model, horizon=args.horizon, input_size=args.input_size, target=args.target,
        preset=args.preset, tune=args.tune, method=args.method, storage=args.storage,
        on_error="skip" if args.skip_bad_events else "raise", out_dir=args.out,
        baseline_origins=args.baseline_origins, seed=args.seed, threads=args.threads, resume=args.resume,
        other_data=args.other_data, **overrides))


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


def _code(args: argparse.Namespace) -> int:
    from . import set_num_threads
    from .recipes.code_optimizer import code_optimizer

    if args.threads:
        set_num_threads(args.threads)
    overrides = {k: getattr(args, k) for k in ("epochs", "seed") if getattr(args, k) is not None}
    return _run_recipe("code", lambda: code_optimizer(
        args.path, task=args.task, lang=args.lang, preset=args.preset, out=args.out, resume=args.resume,
        other_data=args.other_data, progress=False if args.no_progress else None, **overrides))


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command; under MPI (``mpirun -np N seqlab ...``) every rank runs it, rank 0
    prints, and a rank that fails ends the whole job."""
    from . import distributed

    distributed.init()
    if distributed.world_size() > 1 and not distributed.is_main():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    code = _run(argv)
    if code != 0 and distributed.world_size() > 1:
        print(f"seqlab: rank {distributed.rank()} failed (status {code}); aborting every rank",
              file=sys.stderr)
        distributed.abort(code)
    return code


def _run(argv: Sequence[str] | None) -> int:
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
    if args.command == "tune":
        return _tune(args)
    if args.command == "code-lm":
        return _code_lm(args)

    if args.command == "code":
        return _code(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
