"""Timing helpers shared by the benchmarks: medians of repeats, machine description, tables."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence


def median_seconds(fn: Callable[[], object], repeats: int = 20, warmup: int = 3,
                   min_seconds: float = 0.0, clock: Callable[[], float] = time.perf_counter) -> float:
    """Median wall time of fn() over ``repeats`` calls after ``warmup`` untimed calls.

    With ``min_seconds`` the repeats continue until that much time has been spent
    (useful for very fast calls). ``clock=time.process_time`` measures the process's CPU
    time instead: on a machine shared with other jobs, a single-threaded comparison by
    CPU time is not inflated by the time slices the other jobs take.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def interleaved_medians(fns: Sequence[Callable[[], object]], repeats: int = 15,
                        warmup: int = 3) -> list[float]:
    """Medians of several functions timed in alternation (so drift hits all alike)."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def block_medians(fns: Sequence[Callable[[], object]], repeats: int = 5, rounds: int = 2,
                  warmup: int = 1) -> list[float]:
    """Median seconds of each fn, each timed in its own block (``warmup`` untimed calls,
    then ``repeats`` timed ones), the blocks alternating ``rounds`` times: a library's
    threads that spin after its calls (PyTorch's OpenMP, OpenBLAS) then only slow itself."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            for _ in range(warmup):
                fn()
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def machine_description() -> str:
    """CPU model, core count, library versions and seqlab's kernel level, one line."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import os

    parts = [cpu, f"{os.cpu_count()} cores", f"Python {platform.python_version()}"]
    try:
        import numpy

        parts.append(f"NumPy {numpy.__version__}")
    except ImportError:
        pass
    try:
        import torch

        parts.append(f"PyTorch {torch.__version__}")
    except ImportError:
        pass
    import sys

    if "seqlab" in sys.modules:  # the kernels' level (SEQLAB_ARCH forces one) and build
        info = sys.modules["seqlab"].cpu_info()
        forced = ", forced by SEQLAB_ARCH" if info["forced"] else ""
        parts.append(f"seqlab kernels {info['level']} ({info['build']} build{forced})")
    return ", ".join(parts)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; floats are printed with 3 significant digits."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
