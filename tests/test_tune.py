"""Hyperparameter search on Optuna: every method, pruning, outputs and the missing-extra
error (studies shared by several workers: test_tune_shared.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from seqlab.data.timeseries import TimeSeries, make_splits
from seqlab.models.forecast import preset

optuna = pytest.importorskip("optuna")

from seqlab.tune import OptunaPruning, search  # noqa: E402


def _series(n: int = 400) -> TimeSeries:
    rng = np.random.default_rng(0)
    t = np.arange(n)
    y = np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(n)
    return TimeSeries(y[:, None], ["y"])


@pytest.fixture(scope="module")
def splits():
    return make_splits(_series(), 24, 6, "y", (0.7, 0.15, 0.15))


def test_grid_visits_every_point_once(splits) -> None:
    space = {"channels": [4, 8], "kernel_size": [2, 3]}
    r = search(
        "tcn",
        splits,
        space=space,
        method="grid",
        trials=None,
        base=preset("tiny", "tcn", epochs=1),
        refit=False,
    )
    seen = sorted((t["params"]["channels"], t["params"]["kernel_size"]) for t in r.trials)
    assert seen == [(4, 2), (4, 3), (8, 2), (8, 3)]
    assert r.forecaster is None and r.best_value == min(t["value"] for t in r.trials)


@pytest.mark.parametrize("method", ["random", "bayesian"])
def test_samplers_run_and_refit(splits, method: str, tmp_path: Path) -> None:
    space = {"width": [8, 16], "lr": ("float", 1e-3, 1e-2, "log")}
    r = search(
        "nbeats",
        splits,
        space=space,
        method=method,
        trials=3,
        base=preset("tiny", "nbeats", epochs=1),
        out_dir=tmp_path,
    )
    assert len(r.trials) == 3 and all(t["state"] == "COMPLETE" for t in r.trials)
    assert all(1e-3 <= t["params"]["lr"] <= 1e-2 for t in r.trials)
    sampler = {"random": optuna.samplers.RandomSampler, "bayesian": optuna.samplers.TPESampler}[method]
    assert isinstance(r.study.sampler, sampler)
    assert r.forecaster is not None and r.forecaster.config.width == r.best_params["width"]
    assert (tmp_path / "trials.csv").read_text().count("\n") == 4
    assert r.plot_path is not None and r.plot_path.stat().st_size > 1000
    assert (r.saved_path / "forecaster.safetensors").is_file()


def test_hyperband_prunes_from_per_epoch_val_loss(splits) -> None:
    r = search(
        "tcn",
        splits,
        space={"lr": ("float", 1e-5, 1e-1, "log")},
        method="hyperband",
        trials=10,
        base=preset("tiny", "tcn", epochs=9),
        refit=False,
    )
    assert isinstance(r.study.pruner, optuna.pruners.HyperbandPruner)
    states = [t["state"] for t in r.trials]
    assert "PRUNED" in states and "COMPLETE" in states
    pruned = [t for t in r.study.trials if t.state.name == "PRUNED"]
    assert all(0 < len(t.intermediate_values) < 9 for t in pruned)


def test_auto_picks_among_the_models(splits) -> None:
    r = search(
        "auto", splits, method="random", trials=4, base=preset("tiny", "tcn", epochs=1), seed=1, refit=False
    )
    models = {t["params"]["model"] for t in r.trials}
    assert models <= {"lstm", "tcn", "nbeats"} and len(models) >= 2
    assert r.best_params["model"] in models and not any("." in k for k in r.best_params)


def test_pruning_callback_reports_each_epoch(splits) -> None:
    from seqlab.train.forecaster import Forecaster

    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    cb = OptunaPruning(trial)
    Forecaster.fit(splits, preset("tiny", "tcn", epochs=3), callbacks=[cb])
    assert sorted(trial.storage.get_trial(trial._trial_id).intermediate_values) == [1, 2, 3]
    assert not cb.pruned


def test_bad_arguments(splits) -> None:
    with pytest.raises(ValueError, match="method"):
        search("tcn", splits, method="annealing")
    with pytest.raises(ValueError, match="unknown parameter 'chanels'"):
        search("tcn", splits, space={"chanels": [1]})
    with pytest.raises(ValueError, match="not a finite list"):
        search("tcn", splits, space={"lr": ("float", 1e-3, 1e-2)}, method="grid", trials=None)
    with pytest.raises(ValueError, match="model"):
        search("transformer", splits)


def test_missing_optuna_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"pip install 'seqlab\[tune\]'"):
        search("tcn", None)
