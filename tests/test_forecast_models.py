"""Forecasting models: shapes, the N-BEATS bases, weight sharing and double residuals,
training that beats the naive baselines, ensembles, save/load, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import seqlab
from seqlab.data.timeseries import TimeSeries, make_splits
from seqlab.models.forecast import (
    LSTMForecaster,
    MedianEnsemble,
    NBeats,
    NBeatsBlock,
    TCNForecaster,
    build_model,
    forecast_metrics,
    generic_stacks,
    preset,
    seasonality_basis,
    trend_basis,
)
from seqlab.models.forecast.baselines import guess_season, last_value, seasonal_naive
from seqlab.train.forecaster import Forecaster


@pytest.fixture(scope="module")
def splits():
    """A daily-seasonal series with a trend and noise, 1200 hourly steps, two columns."""
    rng = np.random.default_rng(0)
    t = np.arange(1200)
    y = 10 + 0.01 * t + 3 * np.sin(2 * np.pi * t / 24) + 0.3 * rng.standard_normal(len(t))
    other = np.cos(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(len(t))
    times = (np.datetime64("2024-01-01T00:00:00") + t.astype("timedelta64[h]")).astype("datetime64[s]")
    series = TimeSeries(np.stack([other, y], axis=1), ["other", "y"], times)
    return make_splits(series, 48, 12, "y", (0.7, 0.1, 0.2))


@pytest.mark.parametrize("model", ["lstm", "tcn", "nbeats"])
def test_shapes_and_gradients(model: str) -> None:
    cfg = preset("tiny", model)
    m = build_model(cfg, n_features=3, input_size=20, horizon=5, target_columns=[2, 0])
    x = seqlab.tensor(np.random.default_rng(0).standard_normal((4, 20, 3)).astype(np.float32))
    out = m(x)
    assert out.shape == (4, 5, 2)
    (out * out).mean().backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None and np.isfinite(g).all() for g in grads)
    assert sum(float(np.abs(g).sum()) > 0 for g in grads) >= len(grads) - 1


def test_lstm_recurrent_decoder_and_tcn_receptive_field() -> None:
    m = LSTMForecaster(2, horizon=6, n_targets=1, hidden_size=8, decoder="recurrent")
    assert m(np.zeros((3, 10, 2), np.float32)).shape == (3, 6, 1)
    tcn = TCNForecaster(2, 4, channels=4, kernel_size=3)
    assert tcn.receptive_field == 1 + 2 * 2 * (1 + 2 + 4 + 8 + 16)
    with pytest.raises(ValueError, match="decoder"):
        LSTMForecaster(2, 3, decoder="attention")


def test_bases_are_the_papers() -> None:
    t = np.arange(8) / 8
    np.testing.assert_allclose(trend_basis(2, 8), np.stack([np.ones(8), t, t**2]), atol=1e-6)
    s = seasonality_basis(3, 8)
    assert s.shape == (6, 8)
    np.testing.assert_allclose(s[2], np.cos(2 * np.pi * 2 * t), atol=1e-6)
    np.testing.assert_allclose(s[4], np.sin(2 * np.pi * 1 * t), atol=1e-6)
    # a trend block's forecast is a polynomial of degree <= 3 in t
    block = NBeatsBlock(16, 10, width=8, basis="trend", degree=3)
    _, fore = block(np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32))
    tt = np.arange(10) / 10
    coef = np.polyfit(tt, fore.data[0], 3)
    np.testing.assert_allclose(np.polyval(coef, tt), fore.data[0], atol=1e-4)


def test_interpretable_stacks_share_weights_and_are_doubly_residual() -> None:
    m = NBeats(24, 6, target_columns=[0], width=16)
    per_block = (
        NBeatsBlock(24, 6, 16, "trend").num_parameters()
        + NBeatsBlock(24, 6, 16, "seasonality").num_parameters()
    )
    assert m.num_parameters() == per_block  # 3 blocks per stack, one set of weights
    assert len(m.blocks()) == 6 and m.blocks()[0] is m.blocks()[2]
    x = np.random.default_rng(2).standard_normal((3, 24, 1)).astype(np.float32)
    parts = m.decompose(x)
    np.testing.assert_allclose((parts[0].data + parts[1].data)[:, :, None], m(x).data, rtol=1e-5, atol=1e-5)
    # the forecast is the sum of the blocks' forecasts, each block seeing the previous residual
    residual, total = x[:, :, 0], 0
    for block in m.blocks():
        back, fore = block(residual)
        residual, total = residual - back.data, total + fore.data
    np.testing.assert_allclose(total[:, :, None], m(x).data, rtol=1e-5, atol=1e-5)
    generic = NBeats(24, 6, stacks=generic_stacks(3, 2), width=16)
    assert len({id(b) for b in generic.blocks()}) == 6


def test_baselines_and_metrics() -> None:
    x = np.arange(2 * 10 * 1, dtype=np.float32).reshape(2, 10, 1)
    np.testing.assert_array_equal(last_value(x, 3, [0])[0, :, 0], [9, 9, 9])
    np.testing.assert_array_equal(seasonal_naive(x, 5, [0], 4)[0, :, 0], [6, 7, 8, 9, 6])
    hourly = np.arange(0, 10 * 3600, 3600).astype("datetime64[s]")
    assert guess_season(hourly) == 24
    p, t = np.array([1.0, 2.0, 4.0]), np.array([1.0, 2.0, 2.0])
    assert forecast_metrics.mse(p, t) == pytest.approx(4 / 3)
    assert forecast_metrics.mae(p, t) == pytest.approx(2 / 3)
    assert forecast_metrics.smape(p, t) == pytest.approx(100 * (2 * 2 / 6) / 3)
    assert forecast_metrics.r2(t, t) == 1.0
    assert forecast_metrics.within_threshold(p, t, 0.5) == pytest.approx(2 / 3)
    assert forecast_metrics.success_accuracy([0.99, 0.9], [0.97, 0.96]) == 0.5
    with pytest.raises(ValueError, match="same shape"):
        forecast_metrics.mse([1.0], [1.0, 2.0])


@pytest.mark.parametrize("model,epochs", [("nbeats", 8), ("tcn", 6), ("lstm", 8)])
def test_training_beats_the_naive_baselines(splits, model: str, epochs: int) -> None:
    cfg = preset("tiny", model, epochs=epochs, lr=3e-3, batch_size=32)
    f = Forecaster.fit(splits, cfg, season=24)
    scores = f.evaluate("test")
    assert scores["model"]["mse"] < 0.8 * scores["last_value"]["mse"], scores
    assert scores["model"]["r2"] > 0.5
    assert len(f.history[0]) == epochs


def test_ensemble_is_the_median_of_its_members(splits, tmp_path: Path) -> None:
    cfg = preset(
        "tiny",
        "nbeats",
        epochs=2,
        ensemble_lookbacks=[24, 48],
        ensemble_losses=["mse", "mae"],
        ensemble_seeds=[0],
    )
    f = Forecaster.fit(splits, cfg)
    assert isinstance(f.model, MedianEnsemble) and len(f.model.members) == 4
    x = splits.test[0][:5]
    members = f.model.member_forecasts(x)
    np.testing.assert_allclose(f.predict_scaled(x), np.median(members, axis=0), rtol=1e-6)
    g = Forecaster.load(f.save(tmp_path / "ens"))
    raw = splits.raw[-100:]
    np.testing.assert_allclose(g.predict(raw), f.predict(raw), rtol=1e-5)
    with pytest.raises(ValueError, match="ensemble_lookbacks"):
        Forecaster.fit(splits, preset("tiny", "nbeats", epochs=1, ensemble_lookbacks=[500]))


def test_same_seed_same_forecaster(splits) -> None:
    a = Forecaster.fit(splits, preset("tiny", "tcn", epochs=1))
    b = Forecaster.fit(splits, preset("tiny", "tcn", epochs=1))
    x = splits.val[0][:8]
    np.testing.assert_array_equal(a.predict_scaled(x), b.predict_scaled(x))


def test_predict_checks_its_input(splits, tmp_path: Path) -> None:
    f = Forecaster.fit(splits, preset("tiny", "nbeats", epochs=1))
    assert f.predict(splits.raw[-60:]).shape == (12, 1)
    assert f.predict(np.stack([splits.raw[-60:]] * 3)).shape == (3, 12, 1)
    with pytest.raises(ValueError, match="fewer than input_size"):
        f.predict(splits.raw[-10:])
    with pytest.raises(ValueError, match="columns"):
        f.predict(np.zeros((60, 5)))
    bad = splits.raw[-60:].copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        f.predict(bad)
    with pytest.raises(FileNotFoundError, match="not a saved forecaster"):
        Forecaster.load(tmp_path / "nothing")
    with pytest.raises(ValueError, match="unknown forecaster option"):
        preset("tiny", "tcn", channel=3)
