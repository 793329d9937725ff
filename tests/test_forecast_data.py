"""Time series for forecasting: CSV errors naming file/line/column, windows, time splits,
scaling fitted on training rows, the real datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seqlab.data import load_series
from seqlab.data.timeseries import (
    Scaler,
    TimeSeries,
    load_dataset,
    make_splits,
    make_windows,
    read_csv_series,
)


def _csv(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.csv"
    p.write_text(text)
    return p


def test_csv_errors_name_file_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_csv_series(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="empty"):
        read_csv_series(_csv(tmp_path, ""))
    with pytest.raises(ValueError, match="empty"):
        read_csv_series(_csv(tmp_path, "date,a\n"))
    with pytest.raises(ValueError, match=r"line 3, column 'b': value is 'nan'"):
        read_csv_series(_csv(tmp_path, "date,a,b\n2020-01-01,1,2\n2020-01-02,3,nan\n"))
    with pytest.raises(ValueError, match=r"line 2, column 'a': expected a number, got 'x'"):
        read_csv_series(_csv(tmp_path, "date,a\n2020-01-01,x\n"))
    with pytest.raises(ValueError, match=r"line 2, column 'date': cannot parse date"):
        read_csv_series(_csv(tmp_path, "date,a\nyesterday,1\n"))
    with pytest.raises(ValueError, match=r"line 3: expected 2 fields, got 1"):
        read_csv_series(_csv(tmp_path, "date,a\n2020-01-01,1\n2020-01-02\n"))
    with pytest.raises(ValueError, match=r"no column\(s\) \['zz'\]"):
        read_csv_series(_csv(tmp_path, "date,a\n2020-01-01,1\n"), columns=["zz"])


def test_csv_reads_values_and_dates(tmp_path: Path) -> None:
    s = read_csv_series(_csv(tmp_path, "date,a,b\n2020-01-01 00:00:00,1,2\n2020-01-01 01:00:00,3,4.5\n"))
    assert s.columns == ["a", "b"]
    np.testing.assert_array_equal(s.values, [[1, 2], [3, 4.5]])
    assert (s.timestamps[1] - s.timestamps[0]) == np.timedelta64(3600, "s")


def test_timeseries_refuses_nan_and_empty() -> None:
    with pytest.raises(ValueError, match=r"row 1, column 'v'"):
        TimeSeries(np.array([1.0, np.nan, 2.0]), ["v"])
    with pytest.raises(ValueError, match="empty"):
        TimeSeries(np.zeros((0, 1)), ["v"])


def test_windows_are_exact() -> None:
    v = np.arange(20, dtype=np.float32).reshape(10, 2)
    x, y = make_windows(v, 3, 2, [1])
    assert x.shape == (6, 3, 2) and y.shape == (6, 2, 1)
    np.testing.assert_array_equal(x[2], v[2:5])
    np.testing.assert_array_equal(y[2, :, 0], v[5:7, 1])
    with pytest.raises(ValueError, match="fewer than input_size"):
        make_windows(v, 8, 3, [0])


def test_splits_are_in_time_and_scaled_on_training_rows() -> None:
    n = 200
    values = np.stack([np.arange(n), np.arange(n) * 2.0], axis=1)
    s = TimeSeries(values, ["a", "b"])
    sp = make_splits(s, 10, 5, "b", (100, 50, 50))
    assert sp.bounds == (0, 100, 150, 200)
    np.testing.assert_allclose(sp.scaler.center, values[:100].mean(axis=0), rtol=1e-6)
    raw_y = [sp.unscale_targets(part[1]) for part in (sp.train, sp.val, sp.test)]
    assert raw_y[0].max() <= 99 * 2 + 1e-3  # training targets stay in training rows
    assert raw_y[1].min() >= 100 * 2 - 1e-3 and raw_y[1].max() <= 149 * 2 + 1e-3
    assert raw_y[2].min() >= 150 * 2 - 1e-3
    # validation windows look back into training rows for their inputs only
    np.testing.assert_allclose(
        sp.scaler.inverse_transform(sp.val[0][0])[:, 1], np.arange(90, 100) * 2.0, rtol=1e-5
    )
    with pytest.raises(ValueError, match="too short for one window"):
        make_splits(s, 10, 5, "b", (190, 4, 6))
    with pytest.raises(ValueError, match="fewer than input_size"):
        make_splits(TimeSeries(values[:12], ["a", "b"]), 10, 5, "b")
    with pytest.raises(ValueError, match="no column 'c'"):
        make_splits(s, 10, 5, "c")


def test_robust_scaler_and_none() -> None:
    v = np.array([[1.0], [2.0], [3.0], [4.0], [100.0]], dtype=np.float32)
    r = Scaler("robust").fit(v)
    np.testing.assert_allclose(r.center, [3.0])
    np.testing.assert_allclose(r.scale, [2.0])
    np.testing.assert_allclose(Scaler("none").fit(v).transform(v), v)
    with pytest.raises(ValueError, match="method"):
        Scaler("minmax")


def test_statsmodels_datasets() -> None:
    co2 = load_dataset("co2")
    assert len(co2) == 2284 and np.isfinite(co2.values).all()
    assert 310 < co2.values.min() < co2.values.max() < 380
    assert len(load_dataset("nile")) == 100
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist")


def test_etth1(shared_data: Path) -> None:
    s = load_series(shared_data / "ETTh1.csv")
    assert s.columns[-1] == "OT" and len(s) == 17420
    sp = make_splits(s, 96, 24, "OT", (12 * 30 * 24, 4 * 30 * 24, 4 * 30 * 24))
    assert sp.train[0].shape == (8521, 96, 7) and sp.val[0].shape == (2857, 96, 7)
    assert sp.test[1].shape == (2857, 24, 1)
    assert abs(float(sp.train[1].mean())) < 0.05  # scaled on training rows


def test_missing_statsmodels_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "statsmodels", None)
    monkeypatch.setitem(sys.modules, "statsmodels.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'seqlab\[forecast\]'"):
        load_dataset("co2")
