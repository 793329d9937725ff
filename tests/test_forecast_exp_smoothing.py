"""The Holt-Winters baseline of the forecaster: its forecasts, the origins it is refitted at,
its place in the evaluation, and what the recipe says when the model loses to a baseline."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

import seqlab
from seqlab.data.timeseries import TimeSeries, make_splits
from seqlab.models.forecast import preset
from seqlab.models.forecast.exp_smoothing import holt_winters, require_statsmodels, spread_origins
from seqlab.models.forecast.forecast_metrics import forecast_scores
from seqlab.recipes.forecast import baselines_not_beaten
from seqlab.train.forecaster import Forecaster

pytest.importorskip("statsmodels")


def _seasonal(n: int, season: int = 12, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    return 10 + 0.05 * t + 2 * np.sin(2 * np.pi * t / season) + noise * rng.standard_normal(n)


def test_spread_origins_cover_first_and_last_window() -> None:
    np.testing.assert_array_equal(spread_origins(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(spread_origins(3, 20), [0, 1, 2])
    assert len(spread_origins(0, 5)) == 0 and len(spread_origins(5, 0)) == 0


def test_holt_winters_continues_a_clean_trend_and_season() -> None:
    values = _seasonal(240)
    fc = holt_winters(values, [180, 228], horizon=12, season=12)
    assert fc.shape == (2, 12, 1)
    np.testing.assert_allclose(fc[0, :, 0], values[180:192], atol=0.05)
    np.testing.assert_allclose(fc[1, :, 0], values[228:240], atol=0.05)
    # it beats the seasonal naive forecast, which misses the trend
    naive = values[168:180]
    assert np.abs(fc[0, :, 0] - values[180:192]).mean() < 0.5 * np.abs(naive - values[180:192]).mean()


def test_holt_winters_checks_its_origins() -> None:
    with pytest.raises(ValueError, match="origin 300 needs 4..240 rows"):
        holt_winters(_seasonal(240), [300], horizon=12, season=12)


def test_missing_statsmodels_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "statsmodels.tsa.holtwinters", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'seqlab[forecast]'")):
        require_statsmodels()


def test_evaluate_scores_model_and_holt_winters_on_the_same_windows() -> None:
    values = _seasonal(400, noise=0.1)
    series = TimeSeries(values, ["y"], source="seasonal")
    splits = make_splits(series, 24, 6, "y", (0.6, 0.2, 0.2))
    f = Forecaster.fit(splits, preset("tiny", "nbeats", epochs=2), season=12)
    s = f.evaluate("test", exp_smoothing_origins=5)
    x, y = splits.test
    assert s["model"]["windows"] == len(x) and s["exp_smoothing"]["windows"] == 5
    picked = spread_origins(len(x), 5)
    truth = splits.unscale_targets(y[picked])
    assert s["model_at_es_origins"]["mse"] == pytest.approx(
        forecast_scores(splits.unscale_targets(f.predict_scaled(x[picked])), truth)["mse"]
    )
    # window i of the test part forecasts the rows from bounds[2] + i on
    rows = splits.bounds[2] + picked
    np.testing.assert_allclose(truth[:, :, 0], np.stack([values[r : r + 6] for r in rows]), atol=1e-4)
    direct = holt_winters(splits.raw[:, 0], rows, 6, 12)
    assert s["exp_smoothing"]["mae"] == pytest.approx(forecast_scores(direct, truth)["mae"])
    assert s["exp_smoothing"]["mae"] < 0.2


def test_baselines_not_beaten_needs_both_mse_and_mae() -> None:
    row = {"mse": 1.0, "mae": 1.0}
    scores = {
        "model": row,
        "last_value": {"mse": 2.0, "mae": 2.0},
        "seasonal_naive": {"mse": 0.5, "mae": 2.0},
        "model_at_es_origins": row,
        "exp_smoothing": {"mse": 1.5, "mae": 0.9},
    }
    assert baselines_not_beaten(scores) == ["seasonal_naive", "exp_smoothing"]


def test_recipe_says_when_the_model_loses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = np.arange(24 * 30)
    rows = ["date,y"] + [
        f"2024-{1 + i // (24 * 28):02d}-{1 + (i // 24) % 28:02d} {i % 24:02d}:00:00,"
        f"{np.sin(2 * np.pi * i / 24):.5f}"
        for i in t
    ]
    p = tmp_path / "s.csv"
    p.write_text("\n".join(rows) + "\n")
    f = seqlab.forecaster(
        str(p), preset="tiny", epochs=1, lr=1e-5, input_size=48, horizon=12, baseline_origins=3,
        model="nbeats", tune=2, method="random",
    )
    out = capsys.readouterr().out
    s = f.evaluate()
    assert s["seasonal_naive"]["mse"] < 1e-6  # a pure season: seasonal naive is exact
    assert "note: the model does not beat seasonal_naive" in out
    assert "refitted at 3 test origins" in out
    # the search line speaks in the table's units, and "trained in" includes the search
    search = re.search(r"val mse ([0-9.e+-]+), data units", out)
    assert search and float(search.group(1)) == pytest.approx(f.evaluate("val")["model"]["mse"], rel=1e-3)
    trained = float(re.search(r"trained in ([0-9.]+)s \(([0-9.]+)s search of 2 trials", out).group(1))
    trial_seconds = sum(t["seconds"] for t in f.search_result.trials)
    assert trained >= trial_seconds + f.train_seconds - 0.1
