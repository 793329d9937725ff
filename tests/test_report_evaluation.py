"""The evaluation summary every recipe reports: its metric definitions, sample counts (flagged
under 200) and the HTML a fitted recipe shows in Jupyter."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from seqlab.recipes.forecast import evaluation_summary as forecast_summary
from seqlab.recipes.poetry import EVALUATION_KEYS
from seqlab.recipes.vectors import evaluation_summary as vectors_summary
from seqlab.report import METRIC_DEFINITIONS, EvaluationSummary, recipe_html


def test_every_metric_a_recipe_reports_is_defined() -> None:
    retrieval = {"hit@1": 0.1, "hit@5": 0.3, "hit@10": 0.4, "mrr": 0.2, "contrastive_accuracy": 0.9,
                 "windows": 350.0, "bank": 900.0}
    vec = vectors_summary({"model": retrieval, "copy_last": retrieval, "beats_copy_last": False})
    fc = forecast_summary({"model": {"mse": 1.0, "mae": 0.5, "r2": 0.2, "smape": 10.0,
                                     "latency_within_threshold": 0.4, "success_accuracy": 0.9}}, 120, 24,
                          latency_threshold=0.2)
    for summary in (vec, fc):
        for key, definition in summary.definitions():
            assert definition and "{" not in definition, key
    for key in EVALUATION_KEYS:
        assert key in METRIC_DEFINITIONS
    assert vec.shown_keys() == ["hit@1", "hit@5", "hit@10", "mrr", "contrastive_accuracy"]
    text = fc.markdown()
    assert "within 20% of the true latency (|p - y| <= 0.2 |y|)" in text
    assert "| model | 1 | 0.5 | 0.2 | 10 | 0.4 | 0.9 | 120 |" in text
    assert "**The model does not beat the copy-last baseline.**" in vec.markdown()


def test_sample_counts_under_200_are_flagged() -> None:
    rows = {"model": {"mse": 0.5}, "last_value": {"mse": 0.7}}
    small = EvaluationSummary("test windows", rows, 112, "chunks", detail="4,154 tokens")
    assert small.sample_line().startswith("held out: 112 chunks (4,154 tokens); fewer than 200")
    assert "fewer than 200" not in EvaluationSummary("t", rows, 200, "windows").sample_line()
    with pytest.raises(KeyError, match="no definition for the metric 'novel'"):
        EvaluationSummary("t", {"model": {"novel": 1.0}}, 500, "windows").definitions()


def test_html_shows_the_table_sample_count_and_inlined_plot(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n fake"
    (tmp_path / "training_metrics.png").write_bytes(png)
    rows = {"model": {"mse": 0.5}, "seasonal_naive": {"mse": 0.7}}
    summary = EvaluationSummary("test windows", rows, 300, "windows")
    page = recipe_html("Forecaster(nbeats, ...)", summary, tmp_path)
    assert "<td>seasonal_naive</td><td>0.7</td><td>300</td>" in page
    assert "held out: 300 windows" in page and "Forecaster(nbeats, ...)" in page
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    assert "<img" not in recipe_html("x", None, tmp_path / "missing")
