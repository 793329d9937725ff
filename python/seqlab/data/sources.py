"""One entry point from "what the user passed" to a :class:`TimeSeries`: a CSV file, an
event file, a built-in dataset name, an array, or nothing (the synthetic event stream)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .events import events_to_series, read_events
from .synthetic_events import synthetic_events
from .timeseries import TimeSeries, load_dataset, read_csv_series

DATASETS = ("co2", "sunspots", "nile")
EVENT_SUFFIXES = (".jsonl", ".json", ".ndjson")


def load_series(
    source: Any = None,
    on_error: str = "raise",
    bucket_seconds: float = 3600.0,
    date_column: str | int | None = 0,
    synthetic_days: float = 21.0,
    seed: int = 0,
) -> TimeSeries:
    """The series behind ``source``.

    Args:
        source: None (the SYNTHETIC agent event stream of :mod:`seqlab.data.synthetic_events`,
            aggregated per hour), a ``.csv`` path (a date column plus value columns), a
            ``.jsonl``/``.json`` event file (aggregated per ``bucket_seconds``), ``"co2"``,
            ``"sunspots"`` or ``"nile"`` (statsmodels), a :class:`TimeSeries`, an (N, C)
            array, or an iterable of event dicts.
        on_error: for event sources: ``"raise"`` or ``"skip"`` malformed events.
        bucket_seconds, date_column: event bucket width, CSV date column.
        synthetic_days, seed: size and seed of the synthetic stream.
    """
    if source is None:
        events = read_events(synthetic_events(days=synthetic_days, seed=seed), on_error=on_error)
        series = events_to_series(events, bucket_seconds)
        series.source = "synthetic agent events"
        return series
    if isinstance(source, TimeSeries):
        return source
    if isinstance(source, np.ndarray):
        arr = source if source.ndim == 2 else source.reshape(len(source), -1)
        return TimeSeries(arr, [f"x{i}" for i in range(arr.shape[1])], None, source="<array>")
    if isinstance(source, str) and source in DATASETS:
        return load_dataset(source)
    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.exists():
            raise FileNotFoundError(
                f"{p}: no such file (expected a .csv series, a .jsonl/.json event file, "
                f"or one of the datasets {DATASETS})"
            )
        if p.suffix.lower() in EVENT_SUFFIXES:
            series = events_to_series(read_events(p, on_error=on_error), bucket_seconds)
            series.source = str(p)
            return series
        return read_csv_series(p, date_column=date_column)
    if hasattr(source, "__iter__"):
        return events_to_series(read_events(source, on_error=on_error), bucket_seconds)
    raise TypeError(
        f"data: expected a path, a dataset name, a TimeSeries, an array or events, "
        f"got {type(source).__name__}"
    )
