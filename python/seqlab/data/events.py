"""Agent event streams: incremental reading, validation, and features per time bucket.

An event is a JSON object::

    {"timestamp": "2024-05-01T13:00:02Z", "agent_id": "a1", "event_type": "completion",
     "performance_metrics": {"latency_ms": 812.0, "tokens_per_second": 41.5,
                             "memory_usage_mb": 1830.0, "cpu_usage_percent": 63.0,
                             "success_rate": 0.97},
     "prompt_data": {"prompt_text": "...", "prompt_tokens": 120, "response_tokens": 300,
                     "quality_score": 0.8}}          # optional

Sources: a JSON Lines file, a file holding one JSON list, an iterable of dicts, or (through
:func:`aread_events`) an async iterable. Files are read incrementally, one line or one
list element at a time, so a file larger than memory works. A malformed line or an event
missing a field is reported with its line number and either refused (``on_error="raise"``,
an :class:`EventFormatError`) or skipped and recorded in :attr:`EventStream.errors`
(``on_error="skip"``). In a JSON list a malformed element ends the reading (the
elements after it cannot be located); in JSON Lines every other line is still read.

:func:`events_to_series` aggregates events into fixed time buckets (streaming: memory
grows with the number of buckets, not of events) and returns a
:class:`~seqlab.data.timeseries.TimeSeries` of performance, prompt and temporal features,
overall or per agent.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TextIO, overload

import numpy as np

from .timeseries import TimeSeries

PERFORMANCE_FIELDS = (
    "latency_ms",
    "tokens_per_second",
    "memory_usage_mb",
    "cpu_usage_percent",
    "success_rate",
)
PROMPT_FIELDS = ("prompt_tokens", "response_tokens", "quality_score")
FEATURE_COLUMNS = (
    *PERFORMANCE_FIELDS,
    "prompt_tokens",
    "response_tokens",
    "response_ratio",
    "quality_score",
    "event_count",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
)
_CHUNK = 1 << 16


class EventFormatError(ValueError):
    """A malformed event: names the source, the line (or record) and what was expected."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}: line {line}: {message}")
        self.source, self.line, self.detail = source, line, message


@dataclass(slots=True)
class Event:
    """One validated event; ``timestamp`` in seconds since the epoch (UTC), prompt fields NaN
    when the event has no ``prompt_data``."""

    timestamp: float
    agent_id: str
    event_type: str
    latency_ms: float
    tokens_per_second: float
    memory_usage_mb: float
    cpu_usage_percent: float
    success_rate: float
    prompt_tokens: float = math.nan
    response_tokens: float = math.nan
    quality_score: float = math.nan


def _timestamp(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected an ISO 8601 string or seconds since the epoch, got a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"timestamp is {value}")
        return float(value)
    if isinstance(value, str):
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    raise ValueError(f"expected an ISO 8601 string or seconds since the epoch, got {type(value).__name__}")


def _number(obj: dict[str, Any], key: str, where: str) -> float:
    if key not in obj:
        raise ValueError(f"missing field {where}.{key}")
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"field {where}.{key}: expected a number, got {v!r:.40}")
    if not math.isfinite(v):
        raise ValueError(f"field {where}.{key}: value is {v} (NaN/infinite values are refused)")
    return float(v)


def parse_event(obj: Any) -> Event:
    """Validates one event object; raises ValueError naming the missing or bad field."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    for key in ("timestamp", "agent_id", "event_type", "performance_metrics"):
        if key not in obj:
            raise ValueError(f"missing field {key!r}")
    try:
        ts = _timestamp(obj["timestamp"])
    except ValueError as e:
        raise ValueError(f"field 'timestamp': {e}") from None
    perf = obj["performance_metrics"]
    if not isinstance(perf, dict):
        raise ValueError("field 'performance_metrics': expected an object")
    nums = [_number(perf, k, "performance_metrics") for k in PERFORMANCE_FIELDS]
    ev = Event(ts, str(obj["agent_id"]), str(obj["event_type"]), *nums)
    prompt = obj.get("prompt_data")
    if prompt is not None:
        if not isinstance(prompt, dict):
            raise ValueError("field 'prompt_data': expected an object")
        for k in PROMPT_FIELDS:
            if k in prompt and prompt[k] is not None:
                setattr(ev, k, _number(prompt, k, "prompt_data"))
    return ev


def _json_list_items(f: TextIO, source: str) -> Iterator[tuple[int, Any | Exception]]:
    """Elements of a JSON list read chunk by chunk: ``(line, object or the error)``."""
    decoder = json.JSONDecoder()
    buf, pos, line, eof = "", 0, 1, False

    def fill() -> bool:
        nonlocal buf, pos, eof
        chunk = f.read(_CHUNK)
        if not chunk:
            eof = True
            return False
        buf = buf[pos:] + chunk
        pos = 0
        return True

    def skip_ws() -> None:
        nonlocal pos, line
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                line += buf[pos] == "\n"
                pos += 1
            if pos < len(buf) or not fill():
                return

    skip_ws()
    pos += 1  # the opening '['
    skip_ws()
    if pos < len(buf) and buf[pos] == "]":
        return
    while True:
        skip_ws()
        while True:
            try:
                obj, end = decoder.raw_decode(buf, pos)
                break
            except json.JSONDecodeError as e:
                if not eof and fill():
                    continue
                yield line, EventFormatError(source, line, f"malformed JSON ({e.msg})")
                return
        start_line = line
        line += buf.count("\n", pos, end)
        pos = end
        yield start_line, obj
        skip_ws()
        if pos >= len(buf):
            yield line, EventFormatError(source, line, "the JSON list is not closed with ']'")
            return
        if buf[pos] == "]":
            return
        if buf[pos] != ",":
            yield (
                line,
                EventFormatError(source, line, f"expected ',' or ']' between events, got {buf[pos]!r}"),
            )
            return
        pos += 1


class EventStream:
    """Validated :class:`Event` objects from a file, a JSON list file, or an iterable of dicts.

    Args:
        source: a path (``.jsonl``: one event per line; a file starting with ``[``: one
            JSON list), or an iterable of event dicts.
        on_error: ``"raise"`` refuses the stream at the first bad event
            (:class:`EventFormatError` with its line number); ``"skip"`` skips it and
            records the message in :attr:`errors`.

    Iterating reads the source incrementally; the stream can be iterated once.
    """

    def __init__(self, source: str | Path | Iterable[dict[str, Any]], on_error: str = "raise") -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error: expected 'raise' or 'skip', got {on_error!r}")
        self.source = source
        self.on_error = on_error
        self.errors: list[str] = []
        self.count = 0

    def _fail(self, err: EventFormatError) -> None:
        if self.on_error == "raise":
            raise err
        self.errors.append(str(err))

    def _records(self) -> Iterator[tuple[str, int, Any]]:
        src = self.source
        if isinstance(src, (str, Path)):
            p = Path(src)
            if not p.is_file():
                raise FileNotFoundError(f"{p}: no such event file")
            with p.open(encoding="utf-8") as f:
                head = f.read(1)
                while head and head in " \t\r\n":
                    head = f.read(1)
                f.seek(0)
                if head == "[":
                    for line, obj in _json_list_items(f, str(p)):
                        if isinstance(obj, EventFormatError):
                            self._fail(obj)
                            return
                        yield str(p), line, obj
                    return
                for line_no, text in enumerate(f, start=1):
                    if not text.strip():
                        continue
                    try:
                        obj = json.loads(text)
                    except json.JSONDecodeError as e:
                        self._fail(
                            EventFormatError(str(p), line_no, f"malformed JSON ({e.msg}, column {e.colno})")
                        )
                        continue
                    yield str(p), line_no, obj
            return
        if isinstance(src, dict):
            raise TypeError("source: expected a path or an iterable of event dicts, got a single dict")
        try:
            items = iter(src)
        except TypeError:
            raise TypeError(
                f"source: expected a path or an iterable of event dicts, got {type(src).__name__}"
            ) from None
        for i, obj in enumerate(items, start=1):
            yield "<events>", i, obj

    def __iter__(self) -> Iterator[Event]:
        for where, line, obj in self._records():
            try:
                ev = parse_event(obj)
            except ValueError as e:
                self._fail(EventFormatError(where, line, str(e)))
                continue
            self.count += 1
            yield ev


def read_events(source: str | Path | Iterable[dict[str, Any]], on_error: str = "raise") -> EventStream:
    """An :class:`EventStream` over ``source`` (see there)."""
    return EventStream(source, on_error)


async def aread_events(
    source: AsyncIterable[dict[str, Any]], on_error: str = "raise", errors: list[str] | None = None
) -> list[Event]:
    """Validated events collected from an async iterable of dicts (e.g. a websocket feed).

    Bad events raise :class:`EventFormatError` (``on_error="raise"``) or are skipped with
    their message appended to ``errors`` (``on_error="skip"``).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error: expected 'raise' or 'skip', got {on_error!r}")
    out: list[Event] = []
    i = 0
    async for obj in source:
        i += 1
        try:
            out.append(parse_event(obj))
        except ValueError as e:
            err = EventFormatError("<async events>", i, str(e))
            if on_error == "raise":
                raise err from None
            if errors is not None:
                errors.append(str(err))
    return out


class _Bucket:
    __slots__ = ("sums", "counts")

    def __init__(self) -> None:
        self.sums = np.zeros(9)  # 5 performance, prompt_tokens, response_tokens, ratio, quality
        self.counts = np.zeros(9)


@overload
def events_to_series(
    events: Iterable[Event], bucket_seconds: float = ..., per_agent: Literal[False] = ...,
    min_buckets: int = ..., max_buckets: int = ...,
) -> TimeSeries: ...
@overload
def events_to_series(
    events: Iterable[Event], bucket_seconds: float = ..., *, per_agent: Literal[True],
    min_buckets: int = ..., max_buckets: int = ...,
) -> dict[str, TimeSeries]: ...
@overload
def events_to_series(
    events: Iterable[Event], bucket_seconds: float = ..., per_agent: bool = ...,
    min_buckets: int = ..., max_buckets: int = ...,
) -> TimeSeries | dict[str, TimeSeries]: ...
def events_to_series(
    events: Iterable[Event],
    bucket_seconds: float = 3600.0,
    per_agent: bool = False,
    min_buckets: int = 1,
    max_buckets: int = 1_000_000,
) -> TimeSeries | dict[str, TimeSeries]:
    """Aggregates events into a regular series with one row per time bucket.

    Columns (:data:`FEATURE_COLUMNS`): the mean of each performance metric, the mean prompt
    and response token counts, response ratio (response / prompt tokens) and quality score
    over events that have them, the number of events, and hour-of-day and day-of-week as
    sine/cosine of the bucket start (UTC). A bucket without events carries the previous
    bucket's means forward with ``event_count`` 0.

    Args:
        events: validated events (e.g. a :class:`EventStream`), in any order.
        bucket_seconds: bucket width (default one hour).
        per_agent: one series per ``agent_id`` (a dict) instead of one over all agents.
        min_buckets: refuse a series with fewer buckets than this.
        max_buckets: refuse a series spanning more buckets than this (one timestamp far
            from the others would otherwise allocate without bound).

    Raises ValueError when there are no events, or a series is too short or too long.
    """
    if not bucket_seconds > 0:
        raise ValueError(f"bucket_seconds must be > 0, got {bucket_seconds}")
    buckets: dict[str, dict[int, _Bucket]] = {}
    n_events = 0
    for ev in events:
        key = ev.agent_id if per_agent else "all"
        idx = int(ev.timestamp // bucket_seconds)
        b = buckets.setdefault(key, {}).get(idx)
        if b is None:
            b = buckets[key][idx] = _Bucket()
        ratio = ev.response_tokens / ev.prompt_tokens if ev.prompt_tokens > 0 else math.nan
        vals = np.array(
            [
                ev.latency_ms,
                ev.tokens_per_second,
                ev.memory_usage_mb,
                ev.cpu_usage_percent,
                ev.success_rate,
                ev.prompt_tokens,
                ev.response_tokens,
                ratio,
                ev.quality_score,
            ]
        )
        ok = np.isfinite(vals)
        b.sums[ok] += vals[ok]
        b.counts += ok
        n_events += 1
    if n_events == 0:
        raise ValueError("events_to_series: no valid events (the stream is empty or every event was skipped)")
    out: dict[str, TimeSeries] = {}
    for key, bk in sorted(buckets.items()):
        lo, hi = min(bk), max(bk)
        n = hi - lo + 1
        if n < min_buckets:
            raise ValueError(f"events_to_series: agent {key!r} spans {n} buckets, fewer than {min_buckets}")
        if n > max_buckets:
            first, last_ts = (
                datetime.fromtimestamp(i * bucket_seconds, timezone.utc).isoformat() for i in (lo, hi)
            )
            raise ValueError(
                f"events_to_series: agent {key!r} spans {n} buckets of {bucket_seconds:g} s (from {first} to "
                f"{last_ts}), more than max_buckets={max_buckets}; check for a stray timestamp, or pass a "
                "larger bucket_seconds or max_buckets"
            )
        values = np.zeros((n, len(FEATURE_COLUMNS)), dtype=np.float64)
        last = np.zeros(9)
        for i in range(n):
            b = bk.get(lo + i)
            if b is not None:
                mean = np.divide(b.sums, b.counts, out=np.full(9, np.nan), where=b.counts > 0)
                last = np.where(np.isfinite(mean), mean, last)
                values[i, 9] = b.counts[0]
            values[i, :9] = last
        start = (np.arange(lo, hi + 1) * bucket_seconds).astype(np.int64)
        times = start.astype("datetime64[s]")
        hours = (start % 86400) / 3600.0
        dow = ((start // 86400) + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
        values[:, 10], values[:, 11] = np.sin(2 * np.pi * hours / 24), np.cos(2 * np.pi * hours / 24)
        values[:, 12], values[:, 13] = np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7)
        out[key] = TimeSeries(values, list(FEATURE_COLUMNS), times, source=f"events[{key}]")
    return out if per_agent else out["all"]
