"""Hyperparameter search for the forecasters, on Optuna (used directly, not re-written).

``method`` picks Optuna's sampler and pruner: ``"random"`` (RandomSampler), ``"grid"``
(GridSampler), ``"bayesian"`` (TPESampler) or ``"hyperband"`` (TPESampler with a
HyperbandPruner fed each epoch's validation loss through :class:`OptunaPruning`).
``storage`` (see :mod:`seqlab.tune.storage`) is a journal file for several processes on
one host, a PostgreSQL URL for workers on many hosts, or a SQLite file for one process:
processes running :func:`search` with the same ``storage`` and ``study_name`` share one
study. Each adds ``trials`` trials, and none starts a trial once the study holds
``max_trials`` finished (complete or pruned) ones.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..data.sources import load_series
from ..data.timeseries import TimeSeries, WindowSplits, make_splits
from ..models.forecast.baselines import guess_season
from ..models.forecast.config import MODELS, ForecastConfig, preset
from ..serialization import atomic_write_figure, atomic_write_text, write_json
from ..train.forecaster import Forecaster
from .optional import require_optuna
from .pruning import OptunaPruning
from .spaces import DEFAULT_SPACES, SpaceSpec, check_space, grid_of, suggest
from .storage import open_storage

METHODS = ("random", "grid", "bayesian", "hyperband")


@dataclass
class SearchResult:
    """What :func:`search` returns.

    Attributes:
        best_params: the best trial's parameters (``model`` included).
        best_value: its validation MSE (scaled units).
        trials: one dict per trial: number, state, value, params, seconds.
        forecaster: the best configuration refitted (None with ``refit=False``).
        study: the Optuna study.
        plot_path: PNG of the optimisation history (when ``out_dir`` was given and
            matplotlib is installed).
        saved_path: directory of the saved best forecaster (when ``out_dir`` was given).
        selection: for ``model="auto"`` (:func:`seqlab.tune.auto.fit_auto`), the final
            candidates' validation MSE and lookbacks and the one chosen; else empty.
    """

    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]]
    forecaster: Forecaster | None
    study: Any = field(repr=False)
    plot_path: Path | None = None
    saved_path: Path | None = None
    selection: dict[str, Any] = field(default_factory=dict)


def _sampler(optuna: Any, method: str, space: Mapping[str, SpaceSpec], seed: int, auto: bool) -> Any:
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if method == "grid":
        if auto:
            raise ValueError("grid search over model='auto' is not supported; search each model's grid")
        return optuna.samplers.GridSampler(grid_of(space), seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(optuna: Any, method: str, epochs: int) -> Any:
    if method == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    return optuna.pruners.NopPruner()


def _val_mse(forecaster: Forecaster, splits: WindowSplits) -> float:
    x, y = splits.val
    pred = forecaster.predict_scaled(x)
    value = float(np.mean((pred - y) ** 2))
    return value if math.isfinite(value) else float("inf")


def trials_table(study: Any) -> list[dict[str, Any]]:
    """One row per trial of ``study``: number, state, value, params, seconds, worker."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        done = t.datetime_complete is not None and t.datetime_start is not None
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if done else None
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": dict(t.params),
                "seconds": seconds,
                "worker": t.user_attrs.get("worker"),
            }
        )
    return rows


def _write_outputs(out: Path, study: Any, rows: list[dict[str, Any]]) -> Path | None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "trials.json", rows)
    names = sorted({k for r in rows for k in r["params"]})
    lines = [",".join(["number", "state", "value", "seconds", "worker", *names])]
    for r in rows:
        vals = [
            r["number"],
            r["state"],
            "" if r["value"] is None else r["value"],
            "" if r["seconds"] is None else f"{r['seconds']:.3f}",
            r.get("worker") or "",
            *(r["params"].get(n, "") for n in names),
        ]
        lines.append(",".join(str(v) for v in vals))
    atomic_write_text(out / "trials.csv", "\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if done:
        xs = [r["number"] for r in done]
        ys = [r["value"] for r in done]
        ax.scatter(xs, ys, s=14, label="trial")
        ax.plot(xs, np.minimum.accumulate(ys), color="C1", label="best so far")
        ax.legend()
    ax.set_xlabel("trial")
    ax.set_ylabel("validation MSE (scaled)")
    ax.set_title(f"optimisation history: {study.study_name}")
    fig.tight_layout()
    try:
        return atomic_write_figure(out / "optimization_history.png", fig)
    finally:
        plt.close(fig)


def search(
    model: str = "tcn",
    data: Any = None,
    space: Mapping[str, SpaceSpec] | None = None,
    method: str = "bayesian",
    trials: int | None = 20,
    timeout: float | None = None,
    storage: Any = None,
    study_name: str | None = None,
    max_trials: int | None = None,
    heartbeat: float = 60.0,
    input_size: int = 48,
    horizon: int = 12,
    target: str | int = -1,
    split: Any = (0.7, 0.1, 0.2),
    base: ForecastConfig | None = None,
    season: int | None = None,
    seed: int = 0,
    refit: bool = True,
    out_dir: str | Path | None = None,
    verbose: bool = False,
) -> SearchResult:
    """Searches the hyperparameters of a forecaster on the validation windows.

    Args:
        model: ``"lstm"``, ``"tcn"``, ``"nbeats"`` or ``"auto"`` (the model is a parameter).
        data: a :class:`WindowSplits`, or anything :func:`seqlab.data.load_series` takes
            (then windowed with ``input_size``, ``horizon``, ``target``, ``split``).
        space: ``{config field: choices or range}`` (see :mod:`seqlab.tune.spaces`);
            default: the model's :data:`DEFAULT_SPACES` entry.
        method: ``"random"``, ``"grid"``, ``"bayesian"`` (TPE) or ``"hyperband"``.
        trials: trials this call runs (grid: default the grid's size); None with a timeout
            or ``max_trials``.
        timeout: stop starting trials after this many seconds.
        storage: where the study lives, shared by the workers that name it: a journal file
            path (one host), a ``postgresql://`` URL (many hosts), a SQLite file (one
            process) or an Optuna storage (see :func:`seqlab.tune.storage.open_storage`).
        study_name: the study to create or join (default ``"seqlab-<model>-<method>"``).
        max_trials: stop starting trials once the study holds this many complete or
            pruned trials, counting every worker's (failed trials do not count).
        heartbeat: seconds between heartbeats on a database URL; the trial of a worker
            silent for twice this is marked failed by the next worker that starts one.
        base: the configuration the sampled parameters replace (default the ``"small"``
            preset of the model); its ``epochs`` bound every trial.
        season: the seasonal-naive season (default guessed from the timestamps).
        refit: train the best configuration again and return it.
        out_dir: write trials.csv/json, optimization_history.png and the refitted
            forecaster (``best/``) there.

    Returns a :class:`SearchResult`. Objective: validation MSE in scaled units (lower is better).
    """
    optuna = require_optuna()
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    auto = model == "auto"
    if not auto and model not in MODELS:
        raise ValueError(f"model: expected one of {MODELS} or 'auto', got {model!r}")
    if trials is None and timeout is None and max_trials is None and method != "grid":
        raise ValueError("search: give trials, timeout or max_trials")
    if max_trials is not None and max_trials < 1:
        raise ValueError(f"max_trials: expected a positive int, got {max_trials}")
    if trials is not None and trials < 1:
        raise ValueError(f"trials: expected a positive int, got {trials}")
    if isinstance(data, WindowSplits):
        splits = data
        season = season or 24
    else:
        series: TimeSeries = load_series(data)
        splits = make_splits(series, input_size, horizon, target, split)
        season = season or guess_season(series.timestamps)
    known = {f.name for f in fields(ForecastConfig)}
    spaces = (
        {m: dict(DEFAULT_SPACES[m]) for m in MODELS}
        if auto
        else {model: dict(space or DEFAULT_SPACES[model])}
    )
    if auto and space is not None:
        spaces = {m: dict(space) for m in MODELS}
    for sp in spaces.values():
        check_space(sp, known - {"model"})
    bases = {m: (base.replace(model=m) if base is not None else preset("small", m)) for m in spaces}
    if not verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = _sampler(optuna, method, next(iter(spaces.values())), seed, auto)
    if method == "grid" and trials is None:
        trials = int(np.prod([len(v) for v in grid_of(next(iter(spaces.values()))).values()]))
    study = optuna.create_study(
        study_name=study_name or f"seqlab-{model}-{method}",
        storage=open_storage(storage, heartbeat),
        sampler=sampler,
        pruner=_pruner(optuna, method, max(b.epochs for b in bases.values())),
        direction="minimize",
        load_if_exists=True,
    )

    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: Any) -> float:
        trial.set_user_attr("worker", worker)
        name = trial.suggest_categorical("model", list(MODELS)) if auto else model
        params = suggest(trial, spaces[name], prefix=f"{name}." if auto else "")
        config = bases[name].replace(**params)
        pruning = OptunaPruning(trial)
        fitted = Forecaster.fit(splits, config, season=season, callbacks=[pruning], verbose=verbose)
        if pruning.pruned:
            raise optuna.TrialPruned()
        return _val_mse(fitted, splits)

    callbacks = []
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    if max_trials is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(max_trials, states=finished))
    if max_trials is None or len(study.get_trials(deepcopy=False, states=finished)) < max_trials:
        study.optimize(
            objective, n_trials=trials, timeout=timeout, catch=(FloatingPointError,), callbacks=callbacks
        )
    rows = trials_table(study)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        raise RuntimeError(
            f"search: no trial of study {study.study_name!r} completed "
            f"({len(rows)} trials: {sorted({r['state'] for r in rows})})"
        )
    best = study.best_trial
    best_model = best.params.get("model", model)
    best_params = {"model": best_model}
    for k, v in best.params.items():
        if k != "model":
            best_params[k.split(".", 1)[1] if auto else k] = v
    forecaster = None
    if refit:
        config = bases[best_model].replace(**{k: v for k, v in best_params.items() if k != "model"})
        forecaster = Forecaster.fit(splits, config, season=season, verbose=verbose)
    plot_path = saved = None
    if out_dir is not None:
        out = Path(out_dir)
        plot_path = _write_outputs(out, study, rows)
        if forecaster is not None:
            saved = forecaster.save(out / "best")
    return SearchResult(best_params, float(best.value), rows, forecaster, study, plot_path, saved)
