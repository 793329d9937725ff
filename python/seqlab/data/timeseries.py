"""Time series: CSV and built-in datasets, scaling fitted on training data, sliding windows
split in time.

A :class:`TimeSeries` holds ``values`` (N, C) float32 with column names and optional
timestamps. :func:`make_splits` cuts it in time (train before validation before test,
never shuffled across the split), fits a :class:`Scaler` on the training rows only, and
turns each part into windows of ``input_size`` steps predicting the next ``horizon``
steps of the target columns. A validation or test window may look back into the rows
before its part (its targets never do), as the usual ETTh1 protocol does.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

SCALERS = ("standard", "robust", "none")


@dataclass
class TimeSeries:
    """A multivariate series.

    Attributes:
        values: (N, C) float32, finite.
        columns: C column names.
        timestamps: (N,) ``datetime64[s]`` or None.
        source: where it came from (a file path or dataset name), for messages.
    """

    values: np.ndarray
    columns: list[str]
    timestamps: np.ndarray | None = None
    source: str = "<array>"

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.float32)
        if v.ndim == 1:
            v = v[:, None]
        if v.ndim != 2:
            raise ValueError(f"{self.source}: values must be (N, C), got shape {v.shape}")
        if v.shape[0] == 0:
            raise ValueError(f"{self.source}: the series is empty")
        if len(self.columns) != v.shape[1]:
            raise ValueError(f"{self.source}: {v.shape[1]} value columns but {len(self.columns)} names")
        bad = np.argwhere(~np.isfinite(v))
        if len(bad):
            row, col = (int(i) for i in bad[0])
            raise ValueError(
                f"{self.source}: non-finite value ({v[row, col]}) at row {row}, column "
                f"{self.columns[col]!r} ({len(bad)} in all); fill or drop them first "
                "(e.g. TimeSeries.interpolate_missing)"
            )
        self.values = np.ascontiguousarray(v)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def column_index(self, name: str | int) -> int:
        """Index of a column given by name or position."""
        if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
            if not -len(self.columns) <= name < len(self.columns):
                raise ValueError(f"{self.source}: column {name} out of range for {len(self.columns)} columns")
            return int(name) % len(self.columns)
        if name not in self.columns:
            raise ValueError(f"{self.source}: no column {name!r}; columns are {self.columns}")
        return self.columns.index(name)

    @staticmethod
    def interpolate_missing(values: np.ndarray) -> np.ndarray:
        """Linear interpolation over NaNs in each column of a (N, C) array (edges held)."""
        v = np.array(values, dtype=np.float64, copy=True)
        if v.ndim == 1:
            v = v[:, None]
        idx = np.arange(len(v))
        for c in range(v.shape[1]):
            ok = np.isfinite(v[:, c])
            if not ok.any():
                raise ValueError(f"column {c} has no finite value to interpolate from")
            v[~ok, c] = np.interp(idx[~ok], idx[ok], v[ok, c])
        return v


def _parse_time(text: str) -> np.datetime64:
    text = text.strip()
    try:
        return np.datetime64(datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None), "s")
    except ValueError:
        return np.datetime64(text, "s")


def read_csv_series(
    path: str | Path,
    date_column: str | int | None = 0,
    columns: Sequence[str] | None = None,
) -> TimeSeries:
    """Reads a CSV time series: a header row, a date column and numeric value columns.

    Args:
        path: the CSV file.
        date_column: name or position of the date column, or None when there is none.
        columns: value columns to keep (default: every column but the date).

    Raises:
        FileNotFoundError: naming the file.
        ValueError: naming the file, line and column of a missing header, a short row,
            an unparseable date or number, or a NaN/infinite value; or an empty series.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such CSV file")
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{p}: line 1: expected a header row with column names, the file is empty")
        header = [h.strip() for h in header]
        if date_column is None:
            d_idx = None
        elif isinstance(date_column, int):
            if not 0 <= date_column < len(header):
                raise ValueError(
                    f"{p}: line 1: date column {date_column} out of range for {len(header)} columns"
                )
            d_idx = date_column
        elif date_column in header:
            d_idx = header.index(date_column)
        else:
            raise ValueError(f"{p}: line 1: no date column {date_column!r}; columns are {header}")
        names = [h for i, h in enumerate(header) if i != d_idx] if columns is None else list(columns)
        missing = [c for c in names if c not in header]
        if missing:
            raise ValueError(f"{p}: line 1: no column(s) {missing}; columns are {header}")
        if not names:
            raise ValueError(f"{p}: line 1: no value columns besides the date")
        v_idx = [header.index(c) for c in names]
        rows: list[list[float]] = []
        times: list[np.datetime64] = []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < len(header):
                raise ValueError(f"{p}: line {line_no}: expected {len(header)} fields, got {len(row)}")
            if d_idx is not None:
                try:
                    times.append(_parse_time(row[d_idx]))
                except ValueError:
                    raise ValueError(
                        f"{p}: line {line_no}, column {header[d_idx]!r}: cannot parse date {row[d_idx]!r}"
                    ) from None
            vals = []
            for i in v_idx:
                text = row[i].strip()
                try:
                    x = float(text)
                except ValueError:
                    raise ValueError(
                        f"{p}: line {line_no}, column {header[i]!r}: expected a number, got {text!r}"
                    ) from None
                if not math.isfinite(x):
                    raise ValueError(
                        f"{p}: line {line_no}, column {header[i]!r}: value is {text!r} "
                        "(NaN/infinite values are refused; fill them first)"
                    )
                vals.append(x)
            rows.append(vals)
    if not rows:
        raise ValueError(f"{p}: the series is empty (a header but no data rows)")
    ts = np.array(times, dtype="datetime64[s]") if d_idx is not None else None
    return TimeSeries(np.array(rows, dtype=np.float32), names, ts, source=str(p))


def load_dataset(name: str) -> TimeSeries:
    """A real series shipped with statsmodels: ``"co2"`` (weekly Mauna Loa CO2, its missing
    weeks linearly interpolated), ``"sunspots"`` (yearly) or ``"nile"`` (yearly flow).

    Raises ImportError naming ``pip install 'seqlab[forecast]'`` when statsmodels is missing.
    """
    try:
        import statsmodels.datasets as smd
    except ImportError as e:
        raise ImportError(
            "the built-in datasets need statsmodels: pip install 'seqlab[forecast]'"
        ) from e
    if name == "co2":
        df = smd.co2.load_pandas().data
        values = TimeSeries.interpolate_missing(df["co2"].to_numpy())
        times = df.index.to_numpy().astype("datetime64[s]")
        return TimeSeries(values, ["co2"], times, source="statsmodels co2")
    if name == "sunspots":
        df = smd.sunspots.load_pandas().data
        times = np.array([f"{int(y):04d}-01-01" for y in df["YEAR"]], dtype="datetime64[s]")
        return TimeSeries(df["SUNACTIVITY"].to_numpy(), ["SUNACTIVITY"], times, source="statsmodels sunspots")
    if name == "nile":
        df = smd.nile.load_pandas().data
        times = np.array([f"{int(y):04d}-01-01" for y in df["year"]], dtype="datetime64[s]")
        return TimeSeries(df["volume"].to_numpy(), ["volume"], times, source="statsmodels nile")
    raise ValueError(f"load_dataset: unknown dataset {name!r}; choose 'co2', 'sunspots' or 'nile'")


@dataclass
class Scaler:
    """Per-column scaling fitted on training rows: ``"standard"`` (mean, std), ``"robust"``
    (median, inter-quartile range) or ``"none"``. Constant columns get scale 1."""

    method: str = "standard"
    center: np.ndarray | None = None
    scale: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.method not in SCALERS:
            raise ValueError(f"Scaler: method must be one of {SCALERS}, got {self.method!r}")

    def fit(self, values: np.ndarray) -> Scaler:
        """Fits on (N, C) values; returns self."""
        v = np.asarray(values, dtype=np.float64)
        if self.method == "standard":
            center, scale = v.mean(axis=0), v.std(axis=0)
        elif self.method == "robust":
            q1, med, q3 = np.percentile(v, [25, 50, 75], axis=0)
            center, scale = med, q3 - q1
        else:
            center, scale = np.zeros(v.shape[1]), np.ones(v.shape[1])
        scale = np.where(scale > 1e-12, scale, 1.0)
        self.center, self.scale = center.astype(np.float32), scale.astype(np.float32)
        return self

    def _check(self) -> tuple[np.ndarray, np.ndarray]:
        if self.center is None or self.scale is None:
            raise RuntimeError("Scaler: call fit() before transform()")
        return self.center, self.scale

    def transform(self, values: np.ndarray, columns: Sequence[int] | None = None) -> np.ndarray:
        """Scales values (..., C) (or (..., len(columns)) for a subset of the fitted columns)."""
        c, s = self._check()
        if columns is not None:
            c, s = c[list(columns)], s[list(columns)]
        return ((np.asarray(values, dtype=np.float32) - c) / s).astype(np.float32)

    def inverse_transform(self, values: np.ndarray, columns: Sequence[int] | None = None) -> np.ndarray:
        """Undoes :meth:`transform`."""
        c, s = self._check()
        if columns is not None:
            c, s = c[list(columns)], s[list(columns)]
        return (np.asarray(values, dtype=np.float32) * s + c).astype(np.float32)

    def state(self) -> dict[str, Any]:
        c, s = self._check()
        return {"method": self.method, "center": c, "scale": s}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Scaler:
        return cls(
            str(state["method"]),
            np.asarray(state["center"], np.float32),
            np.asarray(state["scale"], np.float32),
        )


def make_windows(
    values: np.ndarray, input_size: int, horizon: int, target_columns: Sequence[int], stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Sliding windows over a (N, C) array (vectorised, no loop over windows).

    Returns ``x (M, input_size, C)`` and ``y (M, horizon, len(target_columns))`` with
    ``M = (N - input_size - horizon) // stride + 1``; window i covers rows
    ``[i*stride, i*stride + input_size)`` and predicts the following ``horizon`` rows.
    """
    v = np.asarray(values, dtype=np.float32)
    n = len(v)
    if input_size < 1 or horizon < 1:
        raise ValueError(f"make_windows: input_size and horizon must be >= 1, got {input_size}, {horizon}")
    if n < input_size + horizon:
        raise ValueError(
            f"make_windows: the series has {n} steps, fewer than input_size + horizon = "
            f"{input_size} + {horizon} = {input_size + horizon}"
        )
    win = np.lib.stride_tricks.sliding_window_view(v, input_size + horizon, axis=0)[::stride]
    win = np.moveaxis(win, -1, 1)  # (M, input_size + horizon, C)
    x = np.ascontiguousarray(win[:, :input_size])
    y = np.ascontiguousarray(win[:, input_size:][:, :, list(target_columns)])
    return x, y


@dataclass
class WindowSplits:
    """Scaled windows of one series split in time, and what is needed to undo the scaling.

    Attributes:
        train, val, test: ``(x (M, input_size, C), y (M, horizon, n_targets))`` scaled.
        scaler: fitted on the training rows only.
        target_columns: indices of the targets among the C columns.
        columns: the C column names.
        bounds: the row boundaries ``(0, train_end, val_end, test_end)``.
        raw: the unscaled (N, C) values.
    """

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    scaler: Scaler
    target_columns: list[int]
    columns: list[str]
    input_size: int
    horizon: int
    bounds: tuple[int, int, int, int]
    raw: np.ndarray = field(repr=False)

    def unscale_targets(self, y: np.ndarray) -> np.ndarray:
        """Targets or predictions (..., n_targets) back in the data's units."""
        return self.scaler.inverse_transform(y, self.target_columns)


def _split_bounds(n: int, split: Sequence[float] | Sequence[int]) -> tuple[int, int, int, int]:
    if len(split) != 3:
        raise ValueError(f"split: expected three parts (train, val, test), got {split!r}")
    if all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in split):
        a, b, c = (int(s) for s in split)
        if min(a, b, c) < 1 or a + b + c > n:
            raise ValueError(f"split: row counts {split} must be positive and sum to at most {n} rows")
    else:
        fr = [float(s) for s in split]
        if min(fr) <= 0 or sum(fr) > 1.0 + 1e-9:
            raise ValueError(f"split: fractions {split} must be positive and sum to at most 1")
        a, b = int(n * fr[0]), int(n * fr[1])
        c = min(n - a - b, int(round(n * fr[2])))
    return 0, a, a + b, a + b + c


def make_splits(
    series: TimeSeries,
    input_size: int,
    horizon: int,
    target: str | int | Sequence[str | int] = -1,
    split: Sequence[float] | Sequence[int] = (0.7, 0.1, 0.2),
    scaler: str = "standard",
    features: Sequence[str | int] | None = None,
) -> WindowSplits:
    """Splits ``series`` in time and windows each part.

    Args:
        series: the series.
        input_size, horizon: window length and steps predicted.
        target: the target column(s) (name or index; default the last column).
        split: fractions or row counts of (train, val, test), in time order.
        scaler: ``"standard"``, ``"robust"`` or ``"none"``, fitted on training rows only.
        features: input columns (default all); the targets are always included.

    Raises ValueError naming the series when a part is too short for one window.
    """
    targets = [target] if isinstance(target, (str, int, np.integer)) else list(target)
    cols = (
        list(range(len(series.columns))) if features is None else [series.column_index(f) for f in features]
    )
    for t in targets:
        if series.column_index(t) not in cols:
            cols.append(series.column_index(t))
    values = series.values[:, cols]
    names = [series.columns[c] for c in cols]
    target_idx = [cols.index(series.column_index(t)) for t in targets]
    n = len(values)
    if n < input_size + horizon:
        raise ValueError(
            f"{series.source}: the series has {n} steps, fewer than input_size + horizon = "
            f"{input_size} + {horizon} = {input_size + horizon}; give a longer series or a smaller "
            "input_size and horizon (--input-size and --horizon on the command line)"
        )
    bounds = _split_bounds(n, split)
    _, tr, va, te = bounds
    sc = Scaler(scaler).fit(values[:tr])
    scaled = sc.transform(values)
    parts = []
    for name, lo, hi in (("train", 0, tr), ("validation", tr, va), ("test", va, te)):
        start = max(0, lo - input_size) if lo > 0 else 0
        if hi - start < input_size + horizon or hi - lo < horizon:
            raise ValueError(
                f"{series.source}: the {name} part (rows {lo}..{hi}) is too short for one window of "
                f"input_size {input_size} + horizon {horizon}; use a longer series or another split"
            )
        parts.append(make_windows(scaled[start:hi], input_size, horizon, target_idx))
    return WindowSplits(
        parts[0], parts[1], parts[2], sc, target_idx, names, input_size, horizon, bounds, values
    )
