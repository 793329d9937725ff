"""The forecaster recipe and `seqlab forecast`: synthetic events by default, CSV and event
files, tuning, saving, clear errors on bad input, and the real-data checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import seqlab
from seqlab.cli import main
from seqlab.data.synthetic_events import synthetic_events, write_synthetic_events
from seqlab.train.forecaster import Forecaster


def test_default_is_the_synthetic_event_stream(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = seqlab.forecaster(
        model="nbeats", preset="tiny", epochs=6, input_size=48, horizon=12, out_dir=tmp_path / "run"
    )
    out = capsys.readouterr().out
    assert "synthetic agent events" in out and "seasonal_naive" in out and "latency_within_threshold" in out
    assert "exp_smoothing" in out and "refitted at 20 test origins" in out
    assert f.columns[f.target_columns[0]] == "latency_ms"
    scores = f.evaluate()
    assert scores["model"]["mse"] < scores["last_value"]["mse"]
    saved = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert saved["test"]["model"]["mse"] == pytest.approx(scores["model"]["mse"])
    g = Forecaster.load(tmp_path / "run")
    hist = f.splits.raw[-48:]
    np.testing.assert_allclose(g.predict(hist), f.predict(hist), rtol=1e-5)


def test_event_file_with_bad_lines(tmp_path: Path) -> None:
    p = write_synthetic_events(tmp_path / "ev.jsonl", n_agents=2, days=6)
    lines = p.read_text().splitlines()
    lines.insert(10, "{not json")
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"ev.jsonl: line 11: malformed JSON"):
        seqlab.forecaster(str(p), preset="tiny", input_size=24, horizon=6, verbose=False, baseline_origins=0)
    f = seqlab.forecaster(
        str(p),
        model="tcn",
        preset="tiny",
        input_size=24,
        horizon=6,
        on_error="skip",
        target="success_rate",
        verbose=False,
        baseline_origins=0,
    )
    assert "success_accuracy" in f.evaluate()["model"]


def test_csv_and_tuning(tmp_path: Path) -> None:
    t = np.arange(600)
    rows = ["date,a,target"] + [
        f"2024-01-{1 + i // 24:02d} {i % 24:02d}:00:00,{np.cos(i / 5):.4f},"
        f"{np.sin(2 * np.pi * i / 24) + 0.001 * i:.4f}"
        for i in t[: 24 * 25]
    ]
    p = tmp_path / "s.csv"
    p.write_text("\n".join(rows) + "\n")
    f = seqlab.forecaster(
        str(p),
        model="auto",
        tune=3,
        preset="tiny",
        method="random",
        input_size=24,
        horizon=6,
        epochs=2,
        verbose=False,
        baseline_origins=0,
    )
    assert f.search_result is not None and len(f.search_result.trials) == 3
    assert f.config.model == f.search_result.best_params["model"]
    assert f.columns == ["a", "target"] and f.target_columns == [1]
    # auto keeps the best trial (lookback 14 of 24) or its median ensemble over 7/14/24,
    # whichever has the lower validation MSE, and says which
    sel = f.search_result.selection
    cands = sel["candidates"]
    assert cands["best trial"]["lookbacks"] == [14] and cands["median ensemble"]["lookbacks"] == [7, 14, 24]
    assert cands["best trial"]["val_mse"] == min(t["value"] for t in f.search_result.trials)
    kept = min(cands, key=lambda k: cands[k]["val_mse"])
    assert sel["chosen"] == kept and f.lookbacks == cands[kept]["lookbacks"]
    x, y = f.splits.val
    assert np.mean((f.predict_scaled(x) - y) ** 2) == pytest.approx(cands[kept]["val_mse"], rel=1e-6)


def test_auto_lookbacks_and_input_size() -> None:
    from seqlab.recipes.forecast import auto_selection_line, default_input_size
    from seqlab.tune.auto import auto_lookbacks

    assert auto_lookbacks(168) == [48, 96, 168] and auto_lookbacks(24) == [7, 14, 24]
    assert auto_lookbacks(2) == [1, 2]
    assert default_input_size(None, "auto") == 168 and default_input_size(None, "nbeats") == 96
    assert default_input_size([24, 48], "auto") == 96
    with pytest.raises(ValueError, match="input_size"):
        auto_lookbacks(0)
    line = auto_selection_line({"chosen": "median ensemble", "candidates": {
        "best trial": {"lookbacks": [96], "val_mse": 0.2},
        "median ensemble": {"lookbacks": [48, 96, 168], "val_mse": 0.19}}})
    assert line == ("auto: kept the median ensemble of best trial (lookbacks 96) and median ensemble "
                    "(lookbacks 48/96/168); the ensemble's val MSE is 5.0% below the best trial's")


def test_too_short_series_and_missing_file() -> None:
    with pytest.raises(ValueError, match="fewer than input_size.*--input-size and --horizon"):
        seqlab.forecaster("nile", input_size=96, horizon=24, verbose=False)
    short = list(synthetic_events(n_agents=1, days=2))
    with pytest.raises(ValueError, match=r"48 steps, fewer than input_size \+ horizon = 96 \+ 24.*--input"):
        seqlab.forecaster(short, verbose=False)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        seqlab.forecaster("nope.csv", verbose=False)


def test_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    p = tmp_path / "ev.json"
    p.write_text(json.dumps(list(synthetic_events(n_agents=1, days=5))))
    assert (
        main(
            [
                "forecast",
                str(p),
                "--model",
                "lstm",
                "--preset",
                "tiny",
                "--input-size",
                "24",
                "--horizon",
                "6",
                "--out",
                str(tmp_path / "o"),
                "--baseline-origins",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "last_value" in out and "refitted at 2 test origins" in out
    assert (tmp_path / "o" / "forecaster.safetensors").is_file()
    assert main(["forecast", str(tmp_path / "missing.csv")]) == 1
    assert "missing.csv" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["forecast", "--horizon", "0"])


def test_co2_nbeats_beats_the_baselines() -> None:
    f = seqlab.forecaster(
        "co2",
        model="nbeats",
        preset="tiny",
        epochs=8,
        width=64,
        lr=3e-3,
        input_size=104,
        horizon=26,
        verbose=False,
        baseline_origins=0,
    )
    s = f.evaluate()
    assert f.season == 52
    assert s["model"]["mse"] < 0.3 * min(s["last_value"]["mse"], s["seasonal_naive"]["mse"]), s


def test_etth1_runs_end_to_end(shared_data: Path) -> None:
    f = seqlab.forecaster(
        shared_data / "ETTh1.csv",
        model="nbeats",
        preset="tiny",
        epochs=1,
        target="OT",
        split=(8640, 2880, 2880),
        verbose=False,
        baseline_origins=0,
    )
    s = f.evaluate()
    assert f.season == 24 and np.isfinite(s["model"]["mse"])
    assert s["model"]["mse"] < 2 * s["last_value"]["mse"]


def test_univariate_history_may_be_1d_and_repr_is_one_line() -> None:
    t = np.arange(400, dtype=np.float32)
    f = seqlab.forecaster(np.sin(2 * np.pi * t / 24)[:, None], preset="tiny", input_size=24, horizon=6,
                          epochs=1, verbose=False)
    history = np.sin(2 * np.pi * t[-30:] / 24)
    flat = f.predict(history)
    assert flat.shape == (6,)
    np.testing.assert_array_equal(flat, f.predict(history[:, None])[:, 0])
    text = repr(f)
    assert "\n" not in text and len(text) < 200
    assert text.startswith("Forecaster(nbeats, input 24 -> horizon 6")
    assert "held out:" in f._repr_html_() and "<table>" in f._repr_html_()
    with pytest.raises(ValueError, match=r"history must be \(T, 1\)"):
        f.predict(np.ones((2, 3, 4, 5)))


def test_input_size_defaults_to_the_longest_ensemble_lookback(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    i = np.arange(900)
    series = (np.sin(2 * np.pi * i / 24) + 0.1 * rng.standard_normal(len(i))).astype(np.float32)[:, None]
    common = {"preset": "tiny", "horizon": 12, "epochs": 1, "verbose": False, "baseline_origins": 0}
    assert seqlab.forecaster(series, **common).input_size == 96
    f = seqlab.forecaster(series, ensemble_lookbacks=[24, 120], out_dir=tmp_path / "run", **common)
    assert f.input_size == 120 and f.lookbacks == [24, 120]
    assert f.predict(series[-120:, 0]).shape == (12,)
    with pytest.raises(ValueError, match="fewer than input_size 120"):
        f.predict(series[-96:])
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["arguments"]["input_size"] == 120  # recorded for resume
    assert seqlab.forecaster(series, input_size=150, ensemble_lookbacks=[24, 120], **common).input_size == 150
