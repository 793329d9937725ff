"""The forecasting recipe: ``seqlab.forecaster(...)``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..random import manual_seed
from ..report.evaluation import EvaluationSummary, append_to_report
from ..threads import get_num_threads, set_num_threads
from .run_dir import claim_run_dir, interruptible, read_run, resume_data

if TYPE_CHECKING:
    from ..train.forecaster import Forecaster


def _default_target(columns: list[str]) -> str:
    """latency for agent event series, otherwise the last column (ETTh1's OT, co2, ...)."""
    return "latency_ms" if "latency_ms" in columns else columns[-1]


def format_scores(scores: dict[str, dict[str, float]]) -> str:
    """The evaluation of :meth:`Forecaster.evaluate` as an aligned text table."""
    keys = list(next(iter(scores.values())))
    widths = [max(10, len(k) + 2) for k in keys]
    label = max(16, *(len(name) + 1 for name in scores))
    lines = [f"{'':{label}s}" + "".join(f"{k:>{w}s}" for k, w in zip(keys, widths))]
    for name, row in scores.items():
        cells = (
            f"{int(row[k]):{w}d}" if k == "windows" else f"{row[k]:{w}.4g}" for k, w in zip(keys, widths)
        )
        lines.append(f"{name:{label}s}" + "".join(cells))
    return "\n".join(lines)


KIND = "forecaster"
DEFAULT_INPUT_SIZE = 96


def default_input_size(ensemble_lookbacks: Any = None, model: str = "nbeats") -> int:
    """The input size when none is given: 96 steps (168 for ``model="auto"``, whose
    ensemble candidate reads up to a week of an hourly series), or the longest ensemble
    lookback."""
    from ..tune.auto import AUTO_INPUT_SIZE

    least = AUTO_INPUT_SIZE if model == "auto" and not ensemble_lookbacks else DEFAULT_INPUT_SIZE
    return max([least, *(int(v) for v in ensemble_lookbacks or [])])


def evaluation_summary(scores: dict[str, dict[str, float]], windows: int, horizon: int,
                       latency_threshold: float = 0.1) -> EvaluationSummary:
    """Test scores of :meth:`Forecaster.evaluate` (the model, then the naive baselines) as the
    report's :class:`~seqlab.report.EvaluationSummary`."""
    return EvaluationSummary(
        "test windows, in the data's units", dict(scores), windows, "windows",
        detail=f"{windows * horizon:,} forecast steps of horizon {horizon}",
        parameters={"latency_threshold": latency_threshold},
    )


def training_document(fitted: Forecaster) -> dict[str, Any]:
    """``training_metrics.json`` of a forecast run: the per-epoch history of its one member,
    or of an ensemble's members averaged epoch by epoch (each member's own is in
    ``members/member<i>/``)."""
    from ..train.trainer import _versions

    histories = [h for h in fitted.history if h]
    epochs = sorted({int(row["epoch"]) for h in histories for row in h})
    rows = []
    for e in epochs:
        at = [row for h in histories for row in h if int(row["epoch"]) == e]
        keys = [k for k in at[0] if k != "epoch" and all(isinstance(r.get(k), (int, float)) for r in at)]
        rows.append({"epoch": e, **{k: float(np.mean([r[k] for r in at])) for k in keys}})
    monitor = "val_loss" if rows and "val_loss" in rows[0] else "train_loss"
    finite = [r for r in rows if np.isfinite(r.get(monitor, np.nan))]
    best = min(finite, key=lambda r: r[monitor]) if finite else None
    messages = []
    if len(histories) > 1:
        messages.append(f"per-epoch figures are the mean over the {len(histories)} ensemble members that "
                        "ran each epoch; each member's own run is in members/member<i>/")
    return {
        "history": rows,
        "best": {"monitor": monitor, "epoch": best["epoch"] if best else None,
                 "value": best[monitor] if best else None},
        "timing": {"train_seconds": fitted.train_seconds, "epochs_run": len(rows)},
        "threads": get_num_threads(),
        "versions": _versions(),
        "messages": messages,
    }


def _resumed_arguments(run_dir: Path, record: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    arguments = dict(record.get("arguments") or {})
    if not arguments:
        raise ValueError(f"resume: {run_dir} has no run.json (not a forecast run directory)")
    if arguments.get("tune") or arguments.get("model") == "auto":
        raise ValueError(f"resume: {run_dir} is a tuned run, which cannot be resumed; start a new run "
                         "(with a shared Optuna storage, a search continues where it stopped)")
    saved = dict(arguments.get("overrides") or {})
    changed = sorted(k for k, v in overrides.items() if k != "epochs" and saved.get(k) != v)
    if changed:
        raise ValueError(f"resume: {run_dir} continues with the settings it was started with; only epochs "
                         f"can change on resume (got different {', '.join(changed)})")
    if "epochs" in overrides:
        saved["epochs"] = overrides["epochs"]
    arguments["overrides"] = saved
    return arguments


def auto_selection_line(selection: dict[str, Any]) -> str:
    """One line saying which ``model="auto"`` candidate was kept and by how much."""
    c = selection["candidates"]
    parts = [f"{name} (lookbacks {'/'.join(map(str, v['lookbacks']))})" for name, v in c.items()]
    line = f"auto: kept the {selection['chosen']} of {' and '.join(parts)}"
    if len(c) == 2:
        single, ens = c["best trial"]["val_mse"], c["median ensemble"]["val_mse"]
        change = 100 * (ens / single - 1)
        side = "below" if change < 0 else "above"
        line += f"; the ensemble's val MSE is {abs(change):.1f}% {side} the best trial's"
    return line


# each baseline and the model's row scored on the same windows
_COMPARED = (
    ("last_value", "model"),
    ("seasonal_naive", "model"),
    ("exp_smoothing", "model_at_es_origins"),
)


def baselines_not_beaten(scores: dict[str, dict[str, float]]) -> list[str]:
    """The baselines of an evaluation the model does not beat on both MSE and MAE (each
    compared with the model on the same windows)."""
    return [
        baseline
        for baseline, model in _COMPARED
        if baseline in scores
        and not (
            scores[model]["mse"] < scores[baseline]["mse"] and scores[model]["mae"] < scores[baseline]["mae"]
        )
    ]


def forecaster(
    data: Any = None,
    model: str = "nbeats",
    horizon: int = 24,
    input_size: int | None = None,
    tune: int | None = None,
    target: str | int | None = None,
    split: Any = (0.7, 0.1, 0.2),
    preset: str = "small",
    method: str = "bayesian",
    storage: str | None = None,
    scaler: str = "standard",
    out_dir: str | Path | None = None,
    on_error: str = "raise",
    baseline_origins: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    verbose: bool = True,
    resume: str | Path | None = None,
    other_data: bool = False,
    **overrides: Any,
) -> Forecaster:
    """Fits a forecaster in one line and prints its test scores beside naive baselines.

    Args:
        data: a CSV time series, a JSON Lines / JSON event file, ``"co2"`` / ``"sunspots"``
            / ``"nile"``, a TimeSeries or array, or None for the SYNTHETIC agent event
            stream (see :func:`seqlab.data.load_series`).
        model: ``"nbeats"``, ``"tcn"``, ``"lstm"`` or ``"auto"`` (tunes and picks among the
            three, then keeps the best configuration alone or as a median ensemble over
            lookbacks, whichever scores better on the validation windows:
            :mod:`seqlab.tune.auto`).
        horizon, input_size: steps predicted and steps of history per window (default
            :data:`DEFAULT_INPUT_SIZE`, 96 (168 for ``"auto"``), or the longest of
            ``ensemble_lookbacks`` when longer:
            ``ensemble_lookbacks=[48, 96, 168]`` reads a week of an hourly series).
        tune: None, or the number of Optuna trials to search before the final fit
            (``"auto"`` searches 9 trials when None).
        target: the column to forecast (default ``latency_ms`` for events, else the last column).
        split: (train, val, test) fractions or row counts, in time order.
        preset: ``"tiny"``, ``"small"`` or ``"paper"`` model sizes (:data:`PRESETS`).
        method, storage: the search's method and Optuna storage URL (when tuning).
        scaler: ``"standard"``, ``"robust"`` or ``"none"``, fitted on training rows.
        out_dir: the run directory: the forecaster (``seqlab.load`` reads it back), its
            evaluation (``evaluation.json``), ``training_metrics.json`` and ``.png``,
            ``training_report.md``, each ensemble member's checkpoints (``members/``) and the
            search. An existing run is refused before any work. None keeps nothing on disk.
        on_error: malformed events are refused (``"raise"``) or skipped (``"skip"``).
        resume: a run directory to continue from its members' last checkpoints, with the
            arguments and on the data it was started with (the other arguments are not
            used); ``epochs=N`` is honoured (training continues up to epoch N counted from
            the start), other changed settings are refused. Tuned runs cannot resume.
        other_data: with ``resume``, continue training on ``data`` although it is not the
            data the run was started on (refused otherwise).
        baseline_origins: test origins at which the Holt-Winters baseline is refitted
            (default :data:`~seqlab.models.forecast.exp_smoothing.DEFAULT_ORIGINS`, 20;
            0 leaves it out); the model is compared with it on the same windows.
        overrides: :class:`~seqlab.models.forecast.ForecastConfig` fields (``epochs=5``,
            ``width=128``, ``ensemble_seeds=[0, 1, 2]``, ...).

    Returns the fitted :class:`~seqlab.train.forecaster.Forecaster` (``.predict(history)``,
    ``.evaluate()``, ``.save(path)``).

    Raises:
        FileExistsError: ``out_dir`` already holds a run.
        KeyboardInterrupt: Ctrl-C during training of a run with ``out_dir``, with the last
            checkpoint and the call that resumes the run in its message.
    """
    from ..data.sources import load_series
    from ..data.timeseries import make_splits
    from ..models.forecast.baselines import guess_season
    from ..models.forecast.config import preset as make_preset
    from ..models.forecast.exp_smoothing import DEFAULT_ORIGINS, require_statsmodels
    from ..report import write_report
    from ..serialization import write_json
    from ..train.forecaster import Forecaster

    es_origins = DEFAULT_ORIGINS if baseline_origins is None else int(baseline_origins)
    if es_origins > 0:
        require_statsmodels()  # before any training
    run_dir: Path | None = None
    if resume is not None:
        run_dir = Path(resume)
        record = read_run(run_dir, KIND)
        data = resume_data(run_dir, record, data, other_data)
        a = _resumed_arguments(run_dir, record, overrides)
        model, horizon, input_size, tune, target = (a[k] for k in ("model", "horizon", "input_size", "tune",
                                                                    "target"))
        split, preset, scaler, on_error, seed = (a[k] for k in ("split", "preset", "scaler", "on_error",
                                                                 "seed"))
        overrides = a["overrides"]
    if input_size is None:
        input_size = default_input_size(overrides.get("ensemble_lookbacks"), model)
    arguments = {"model": model, "horizon": horizon, "input_size": input_size, "tune": tune, "target": target,
                 "split": list(split), "preset": preset, "scaler": scaler, "on_error": on_error, "seed": seed,
                 "overrides": overrides}
    base_model = "nbeats" if model == "auto" else model
    base = make_preset(preset, base_model, seed=seed, **overrides)
    if resume is None and out_dir is not None:
        run_dir = claim_run_dir(out_dir, KIND, data, arguments)
    if threads is not None:
        set_num_threads(threads)
    manual_seed(seed)
    series = load_series(data, on_error=on_error, seed=seed)
    tgt = _default_target(series.columns) if target is None else target
    splits = make_splits(series, input_size, horizon, tgt, split, scaler=scaler)
    season = guess_season(series.timestamps)
    if verbose:
        print(
            f"seqlab forecaster: {model} on {series.source} ({len(series)} steps, {len(series.columns)} "
            f"columns), target {splits.columns[splits.target_columns[0]]!r}, input {input_size}, "
            f"horizon {horizon}, {get_num_threads()} threads"
        )
    trials = tune if tune is not None else (9 if model == "auto" else None)
    start = time.perf_counter()
    if trials:
        from ..tune.auto import fit_auto
        from ..tune.search import search

        search_dir = None if run_dir is None else run_dir / "search"
        if model == "auto":
            fitted = fit_auto(splits, base, trials, season, method=method, storage=storage, seed=seed,
                              out_dir=search_dir)
            result = fitted.search_result
        else:
            result = search(model, splits, method=method, trials=trials, storage=storage, base=base,
                            season=season, seed=seed, out_dir=search_dir, verbose=False)
            found = result.forecaster
            assert found is not None
            fitted = found
            fitted.search_result = result
        if verbose:
            val_mse = fitted.evaluate("val")["model"]["mse"]
            print(
                f"search: {len(result.trials)} trials, best {result.best_params} "
                f"(val mse {val_mse:.4g}, data units)"
            )
            if result.selection:
                print(auto_selection_line(result.selection))
    elif run_dir is None:
        fitted = Forecaster.fit(splits, base, season=season, verbose=False)
    else:
        with interruptible(run_dir, KIND):
            fitted = Forecaster.fit(splits, base, season=season, verbose=False, out_dir=run_dir / "members",
                                    resume=resume is not None)
    seconds = time.perf_counter() - start
    scores = fitted.evaluate("test", exp_smoothing_origins=es_origins)
    fitted.evaluation = {"test": scores}
    fitted.summary = evaluation_summary(scores, len(splits.test[0]), horizon)
    fitted.run_dir = run_dir
    if verbose:
        search_part = (
            f" ({seconds - fitted.train_seconds:.1f}s search of {trials} trials, "
            f"{fitted.train_seconds:.1f}s final fit)"
            if trials
            else ""
        )
        print(f"trained in {seconds:.1f}s{search_part}; test scores (data units), "
              f"{fitted.summary.sample_line()}:")
        print(format_scores(scores))
        if es_origins > 0:
            print(
                f"exp_smoothing: Holt-Winters (damped trend, season {season}) refitted at "
                f"{int(scores['exp_smoothing']['windows'])} test origins spread evenly; "
                "model_at_es_origins is the model on those windows"
            )
        lost = baselines_not_beaten(scores)
        if lost:
            print(f"note: the model does not beat {', '.join(lost)} on test MSE and MAE")
    if run_dir is not None:
        fitted.save(run_dir)
        write_json(run_dir / "evaluation.json", {"test": scores, "val": fitted.evaluate("val")})
        write_json(run_dir / "training_metrics.json", training_document(fitted))
        write_report(run_dir)
        append_to_report(run_dir, fitted.summary, [
            "Files: [evaluation.json](evaluation.json), [config.toml](config.toml), "
            "[forecaster.safetensors](forecaster.safetensors), members/ (each member's run)",
        ])
        if verbose:
            print(f"report: {run_dir / 'training_report.md'}")
    return fitted
