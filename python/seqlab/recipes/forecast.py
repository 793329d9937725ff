"""The forecasting recipe: ``seqlab.forecaster(...)``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..random import manual_seed
from ..threads import get_num_threads, set_num_threads

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
    input_size: int = 96,
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
    **overrides: Any,
) -> Forecaster:
    """Fits a forecaster in one line and prints its test scores beside naive baselines.

    Args:
        data: a CSV time series, a JSON Lines / JSON event file, ``"co2"`` / ``"sunspots"``
            / ``"nile"``, a TimeSeries or array, or None for the SYNTHETIC agent event
            stream (see :func:`seqlab.data.load_series`).
        model: ``"nbeats"``, ``"tcn"``, ``"lstm"`` or ``"auto"`` (tunes and picks among the three).
        horizon, input_size: steps predicted and steps of history per window.
        tune: None, or the number of Optuna trials to search before the final fit
            (``"auto"`` searches 9 trials when None).
        target: the column to forecast (default ``latency_ms`` for events, else the last column).
        split: (train, val, test) fractions or row counts, in time order.
        preset: ``"tiny"``, ``"small"`` or ``"paper"`` model sizes (:data:`PRESETS`).
        method, storage: the search's method and Optuna storage URL (when tuning).
        scaler: ``"standard"``, ``"robust"`` or ``"none"``, fitted on training rows.
        out_dir: save the forecaster, its evaluation (``evaluation.json``) and the search there.
        on_error: malformed events are refused (``"raise"``) or skipped (``"skip"``).
        baseline_origins: test origins at which the Holt-Winters baseline is refitted
            (default :data:`~seqlab.models.forecast.exp_smoothing.DEFAULT_ORIGINS`, 20;
            0 leaves it out); the model is compared with it on the same windows.
        overrides: :class:`~seqlab.models.forecast.ForecastConfig` fields (``epochs=5``,
            ``width=128``, ``ensemble_seeds=[0, 1, 2]``, ...).

    Returns the fitted :class:`~seqlab.train.forecaster.Forecaster` (``.predict(history)``,
    ``.evaluate()``, ``.save(path)``).
    """
    from ..data.sources import load_series
    from ..data.timeseries import make_splits
    from ..models.forecast.baselines import guess_season
    from ..models.forecast.config import preset as make_preset
    from ..models.forecast.exp_smoothing import DEFAULT_ORIGINS, require_statsmodels
    from ..serialization import write_json
    from ..train.forecaster import Forecaster

    es_origins = DEFAULT_ORIGINS if baseline_origins is None else int(baseline_origins)
    if es_origins > 0:
        require_statsmodels()  # before any training
    if threads is not None:
        set_num_threads(threads)
    manual_seed(seed)
    series = load_series(data, on_error=on_error, seed=seed)
    tgt = _default_target(series.columns) if target is None else target
    splits = make_splits(series, input_size, horizon, tgt, split, scaler=scaler)
    season = guess_season(series.timestamps)
    base_model = "nbeats" if model == "auto" else model
    base = make_preset(preset, base_model, seed=seed, **overrides)
    if verbose:
        print(
            f"seqlab forecaster: {model} on {series.source} ({len(series)} steps, {len(series.columns)} "
            f"columns), target {splits.columns[splits.target_columns[0]]!r}, input {input_size}, "
            f"horizon {horizon}, {get_num_threads()} threads"
        )
    trials = tune if tune is not None else (9 if model == "auto" else None)
    start = time.perf_counter()
    if trials:
        from ..tune.search import search

        search_dir = None if out_dir is None else Path(out_dir) / "search"
        result = search(
            model,
            splits,
            method=method,
            trials=trials,
            storage=storage,
            base=base,
            season=season,
            seed=seed,
            out_dir=search_dir,
            verbose=False,
        )
        fitted = result.forecaster
        assert fitted is not None
        fitted.search_result = result
        if verbose:
            val_mse = fitted.evaluate("val")["model"]["mse"]
            print(
                f"search: {len(result.trials)} trials, best {result.best_params} "
                f"(val mse {val_mse:.4g}, data units)"
            )
    else:
        fitted = Forecaster.fit(splits, base, season=season, verbose=False)
    seconds = time.perf_counter() - start
    scores = fitted.evaluate("test", exp_smoothing_origins=es_origins)
    if verbose:
        search_part = (
            f" ({seconds - fitted.train_seconds:.1f}s search of {trials} trials, "
            f"{fitted.train_seconds:.1f}s final fit)"
            if trials
            else ""
        )
        print(f"trained in {seconds:.1f}s{search_part}; test scores (data units):")
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
    if out_dir is not None:
        fitted.save(Path(out_dir))
        write_json(Path(out_dir) / "evaluation.json", {"test": scores, "val": fitted.evaluate("val")})
    return fitted
