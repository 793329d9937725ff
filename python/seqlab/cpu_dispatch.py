"""Which instruction-set level of the C++ kernels runs, and why.

The core holds every kernel compiled for four x86-64 levels: x86-64-v2 (SSE4.2),
x86-64-v3 (AVX2 + FMA), x86-64-v4 (AVX-512) and x86-64-v4-bf16 (x86-64-v4 + AVX512_BF16,
the level of the bf16 GEMMs). At import it picks the highest level the CPU (and the OS, for
AVX and AVX-512 registers) supports, or the one the environment variable ``SEQLAB_ARCH``
names (``x86-64-v2|x86-64-v3|x86-64-v4|x86-64-v4-bf16``): for tests, and for
bit-identical results across machines. A level the CPU lacks, or an unknown value, fails
the import with an ``ImportError`` naming the level asked for and the CPU's best (or the
valid values). A native build (``SEQLAB_NATIVE=ON``) holds one level, ``native``, compiled
for the building machine, and accepts no ``SEQLAB_ARCH``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, TypedDict

from . import _core


class CpuInfo(TypedDict):
    """What :func:`cpu_info` returns."""

    features: dict[str, bool]  # sse4_2, avx2, fma, avx512f/bw/dq/vl, avx512_bf16, avx512_vnni, amx_* ...
    levels: list[str]  # the levels this build holds, lowest first
    level: str  # the level the kernels run at
    forced: bool  # chosen by SEQLAB_ARCH
    build: Literal["dispatch", "native"]
    blas_kernel_family: str  # the kernels OpenBLAS picked for this CPU (e.g. SkylakeX)


def cpu_info() -> CpuInfo:
    """The CPU's features, the kernel levels built and the one selected at import.

    Example: ``{"features": {"avx2": True, "avx512f": True, ...}, "levels": ["x86-64-v2",
    "x86-64-v3", "x86-64-v4", "x86-64-v4-bf16"], "level": "x86-64-v4-bf16", "forced": False,
    "build": "dispatch", "blas_kernel_family": "SkylakeX"}``.
    """
    info = _core.dispatch_info()
    return CpuInfo(
        features=dict(_core.cpu_features()),
        levels=list(info["levels"]),
        level=str(info["level"]),
        forced=bool(info["forced"]),
        build=info["build"],
        blas_kernel_family=str(_core.blas_kernel_family()),
    )


def select_level(requested: str, features: Iterable[str], levels: Iterable[str] | None = None) -> str:
    """The level import selects for ``SEQLAB_ARCH=requested`` (``""``: not set) on a CPU
    with the given feature names (the keys of ``cpu_info()["features"]``), among ``levels``
    (default: this build's).

    Raises ``RuntimeError`` with the message import gives: the requested level and the
    CPU's best when the CPU lacks a feature of it, the valid values when it is unknown.
    """
    built = list(cpu_info()["levels"] if levels is None else levels)
    return str(_core.select_level(requested, built, set(features)))
