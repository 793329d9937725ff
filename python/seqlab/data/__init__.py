"""Data: batching, time series and event streams (loading, features, windows, splits)."""

from .batching import ArrayBatches, BatchSource, PaddedBatch, SequenceBatches, pad_sequences
from .events import Event, EventFormatError, EventStream, aread_events, events_to_series, read_events
from .sources import load_series
from .synthetic_events import synthetic_events, write_synthetic_events
from .timeseries import (
    Scaler,
    TimeSeries,
    WindowSplits,
    load_dataset,
    make_splits,
    make_windows,
    read_csv_series,
)

__all__ = [
    "ArrayBatches",
    "BatchSource",
    "Event",
    "EventFormatError",
    "EventStream",
    "PaddedBatch",
    "Scaler",
    "SequenceBatches",
    "TimeSeries",
    "WindowSplits",
    "aread_events",
    "events_to_series",
    "load_dataset",
    "load_series",
    "make_splits",
    "make_windows",
    "pad_sequences",
    "read_csv_series",
    "read_events",
    "synthetic_events",
    "write_synthetic_events",
]
