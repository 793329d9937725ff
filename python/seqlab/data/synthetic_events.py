"""A generator of SYNTHETIC agent event streams, for the demo, the notebook and the tests.

The numbers are made up, not measured: each agent has a base latency and throughput;
the load follows a daily cycle (peak mid-afternoon UTC) and a quieter weekend; latency
rises and throughput falls with the load; occasional incidents (a few hours of high
latency and failures) hit one agent at a time; success rates fall with latency. Every
event has the fields :mod:`seqlab.data.events` expects, and most carry ``prompt_data``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..serialization import atomic_write_text

_EVENT_TYPES = ("completion", "chat", "tool_call", "embedding")


def synthetic_events(
    n_agents: int = 3,
    days: float = 14.0,
    events_per_hour: float = 12.0,
    seed: int = 0,
    start: str = "2024-01-01T00:00:00+00:00",
    incident_rate: float = 0.01,
) -> Iterator[dict[str, Any]]:
    """Yields synthetic event dicts in time order.

    Args:
        n_agents: agents ``agent-0`` ... ``agent-{n-1}``.
        days: length of the stream.
        events_per_hour: mean events per agent per hour at average load.
        seed: the stream is a function of the arguments and this seed.
        start: ISO time of the first hour.
        incident_rate: chance per agent-hour that an incident (3-8 hours) starts.
    """
    if n_agents < 1 or days <= 0 or events_per_hour <= 0:
        raise ValueError("synthetic_events: n_agents, days and events_per_hour must be positive")
    rng = np.random.default_rng(seed)
    t0 = datetime.fromisoformat(start)
    if t0.tzinfo is None:
        t0 = t0.replace(tzinfo=timezone.utc)
    base_latency = rng.uniform(300, 900, n_agents)
    base_tps = rng.uniform(25, 60, n_agents)
    base_mem = rng.uniform(1000, 3000, n_agents)
    incident_left = np.zeros(n_agents, dtype=int)
    hours = int(days * 24)
    for h in range(hours):
        when = t0 + timedelta(hours=h)
        hod, dow = when.hour + when.minute / 60, when.weekday()
        load = 1.0 + 0.6 * np.sin(2 * np.pi * (hod - 8) / 24) - (0.35 if dow >= 5 else 0.0)
        load = max(load, 0.1)
        batch = []
        for a in range(n_agents):
            if incident_left[a] > 0:
                incident_left[a] -= 1
            elif rng.random() < incident_rate:
                incident_left[a] = int(rng.integers(3, 9))
            incident = incident_left[a] > 0
            n = int(rng.poisson(events_per_hour * load))
            for _ in range(n):
                sec = float(rng.uniform(0, 3600))
                lat = base_latency[a] * (0.6 + 0.5 * load) * float(rng.lognormal(0, 0.15))
                if incident:
                    lat *= float(rng.uniform(2.0, 4.0))
                tps = base_tps[a] / (0.6 + 0.4 * load) * float(rng.lognormal(0, 0.1))
                fail_p = min(
                    0.9, 0.01 + 0.02 * (lat / base_latency[a] - 1).clip(0) + (0.3 if incident else 0)
                )
                success = float(np.clip(1 - fail_p + rng.normal(0, 0.01), 0, 1))
                ev: dict[str, Any] = {
                    "timestamp": (when + timedelta(seconds=sec)).isoformat().replace("+00:00", "Z"),
                    "agent_id": f"agent-{a}",
                    "event_type": _EVENT_TYPES[int(rng.integers(len(_EVENT_TYPES)))],
                    "performance_metrics": {
                        "latency_ms": round(lat, 2),
                        "tokens_per_second": round(tps, 2),
                        "memory_usage_mb": round(base_mem[a] * (0.8 + 0.3 * load) + rng.normal(0, 30), 1),
                        "cpu_usage_percent": round(float(np.clip(35 * load + rng.normal(0, 5), 1, 100)), 1),
                        "success_rate": round(success, 4),
                    },
                }
                if rng.random() < 0.8:
                    pt = int(rng.integers(20, 400))
                    ev["prompt_data"] = {
                        "prompt_text": "synthetic prompt",
                        "prompt_tokens": pt,
                        "response_tokens": int(pt * rng.uniform(0.5, 3.0)),
                        "quality_score": round(
                            float(np.clip(0.9 - 0.2 * (1 - success) + rng.normal(0, 0.05), 0, 1)), 3
                        ),
                    }
                batch.append((sec, ev))
        batch.sort(key=lambda p: p[0])
        yield from (ev for _, ev in batch)


def write_synthetic_events(path: str | Path, **kwargs: Any) -> Path:
    """Writes :func:`synthetic_events` (same arguments) as a JSON Lines file; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, "".join(json.dumps(ev) + "\n" for ev in synthetic_events(**kwargs)))
    return p
