"""Event streams: incremental reading (JSON Lines, JSON list, iterables, async), errors with
line numbers, features per bucket, and the synthetic generator."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from seqlab.data import events as ev_mod
from seqlab.data.events import (
    FEATURE_COLUMNS,
    EventFormatError,
    aread_events,
    events_to_series,
    parse_event,
    read_events,
)
from seqlab.data.synthetic_events import synthetic_events, write_synthetic_events


def _event(ts: str = "2024-03-04T10:15:00Z", agent: str = "a", latency: float = 100.0, **prompt) -> dict:
    e = {
        "timestamp": ts,
        "agent_id": agent,
        "event_type": "chat",
        "performance_metrics": {
            "latency_ms": latency,
            "tokens_per_second": 40.0,
            "memory_usage_mb": 1000.0,
            "cpu_usage_percent": 50.0,
            "success_rate": 0.99,
        },
    }
    if prompt:
        e["prompt_data"] = prompt
    return e


def test_jsonl_malformed_line_is_refused_with_its_line_number(tmp_path: Path) -> None:
    p = tmp_path / "ev.jsonl"
    p.write_text(json.dumps(_event()) + "\n\n" + '{"timestamp": broken\n' + json.dumps(_event()) + "\n")
    with pytest.raises(EventFormatError, match=r"ev.jsonl: line 3: malformed JSON"):
        list(read_events(p))
    stream = read_events(p, on_error="skip")
    assert len(list(stream)) == 2
    assert len(stream.errors) == 1 and "line 3" in stream.errors[0]


def test_missing_fields_and_bad_values_name_the_field(tmp_path: Path) -> None:
    bad = _event()
    del bad["performance_metrics"]["success_rate"]
    nan = _event(latency=float("nan"))
    p = tmp_path / "ev.jsonl"
    p.write_text("\n".join(json.dumps(e) for e in (_event(), bad, nan, {"agent_id": "x"})) + "\n")
    with pytest.raises(EventFormatError, match=r"line 2: missing field performance_metrics.success_rate"):
        list(read_events(p))
    stream = read_events(p, on_error="skip")
    assert len(list(stream)) == 1
    assert [e.split(":")[1].strip() for e in stream.errors] == ["line 2", "line 3", "line 4"]
    assert "NaN" in stream.errors[1] and "'timestamp'" in stream.errors[2]


def test_missing_file_and_bad_on_error() -> None:
    with pytest.raises(FileNotFoundError, match="no-such.jsonl"):
        list(read_events("no-such.jsonl"))
    with pytest.raises(ValueError, match="on_error"):
        read_events([], on_error="ignore")


def test_json_list_is_read_incrementally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ev_mod, "_CHUNK", 7)  # forces objects to straddle many chunks
    items = [_event(latency=float(i), prompt_tokens=10, response_tokens=20) for i in range(25)]
    p = tmp_path / "ev.json"
    p.write_text("[\n" + ",\n".join(json.dumps(e) for e in items) + "\n]\n")
    got = list(read_events(p))
    assert [e.latency_ms for e in got] == [float(i) for i in range(25)]
    assert got[3].response_tokens == 20.0
    p.write_text("[\n" + json.dumps(items[0]) + ",\n" + json.dumps(items[1])[:-5] + "\n]")
    with pytest.raises(EventFormatError, match="line 3: malformed JSON"):
        list(read_events(p))


def test_iterables_and_async_sources() -> None:
    assert [e.agent_id for e in read_events([_event(agent="x"), _event(agent="y")])] == ["x", "y"]

    async def feed():
        for i in range(3):
            yield _event(latency=float(i)) if i != 1 else {"bad": 1}

    errors: list[str] = []
    out = asyncio.run(aread_events(feed(), on_error="skip", errors=errors))
    assert [e.latency_ms for e in out] == [0.0, 2.0] and "line 2" in errors[0]
    with pytest.raises(EventFormatError):
        asyncio.run(aread_events(feed()))


def test_parse_event_timestamp_forms() -> None:
    a = parse_event(_event(ts="2024-03-04T10:15:00Z"))
    b = parse_event({**_event(), "timestamp": a.timestamp})
    assert a.timestamp == b.timestamp == 1709547300.0
    assert np.isnan(a.quality_score)


def test_features_per_bucket() -> None:
    evs = [
        _event("2024-03-04T10:05:00Z", latency=100, prompt_tokens=10, response_tokens=30, quality_score=0.5),
        _event("2024-03-04T10:35:00Z", latency=300),
        _event("2024-03-04T12:10:00Z", latency=50, prompt_tokens=20, response_tokens=20, quality_score=1.0),
    ]
    s = events_to_series(read_events(evs))
    assert s.columns == list(FEATURE_COLUMNS) and s.values.shape == (3, len(FEATURE_COLUMNS))
    col = {c: i for i, c in enumerate(s.columns)}
    np.testing.assert_allclose(s.values[:, col["latency_ms"]], [200, 200, 50])  # 11:00 carried forward
    np.testing.assert_allclose(s.values[:, col["event_count"]], [2, 0, 1])
    np.testing.assert_allclose(s.values[:, col["response_ratio"]], [3.0, 3.0, 1.0])
    np.testing.assert_allclose(s.values[0, col["hour_sin"]], np.sin(2 * np.pi * 10 / 24), atol=1e-6)
    np.testing.assert_allclose(s.values[0, col["dow_cos"]], 1.0, atol=1e-6)  # a Monday
    per_agent = events_to_series(read_events([_event(agent="a"), _event(agent="b")]), per_agent=True)
    assert sorted(per_agent) == ["a", "b"]
    with pytest.raises(ValueError, match="no valid events"):
        events_to_series(read_events([]))


def test_synthetic_stream_is_seeded_and_seasonal(tmp_path: Path) -> None:
    a = list(synthetic_events(n_agents=2, days=4, seed=3))
    b = list(synthetic_events(n_agents=2, days=4, seed=3))
    assert a == b and len(a) > 500
    times = [parse_event(e).timestamp for e in a]
    assert times == sorted(times)
    s = events_to_series(read_events(a))
    lat = s.values[:, s.columns.index("latency_ms")]
    hours = np.arange(len(lat)) % 24
    assert lat[(hours >= 12) & (hours <= 16)].mean() > 1.2 * lat[(hours <= 3) | (hours >= 23)].mean()
    p = write_synthetic_events(tmp_path / "syn.jsonl", n_agents=1, days=1)
    assert len(list(read_events(p))) == sum(1 for _ in p.open())
