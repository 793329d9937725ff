"""Thread count of the C++ kernels and OpenBLAS (set together)."""

from __future__ import annotations

from . import _core


def set_num_threads(n: int) -> None:
    """Sets the kernel thread pool and OpenBLAS to ``n`` threads (default: the cores)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads used by the kernels and OpenBLAS."""
    return int(_core.get_num_threads())
