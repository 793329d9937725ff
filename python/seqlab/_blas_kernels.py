"""Chooses OpenBLAS's kernel family before the core (which links the system OpenBLAS) loads.

Debian 12's OpenBLAS (0.3.21) picks its kernels from a table of CPU models it knows. On
Intel models newer than that table (Sapphire Rapids, for one) it falls back to its
generic SSE3 ``Prescott`` kernels: several times slower, and rounding a row differently
by where it falls in a matrix, so results would change with the thread count. Where the
user has not chosen (``OPENBLAS_CORETYPE`` unset) and the CPU is Intel, the family is
chosen here from the CPU's features, as OpenBLAS's own table does for the models it
knows: AVX-512 (F, BW, DQ, VL) -> ``SkylakeX``; AVX2 with FMA -> ``Haswell``. Other
vendors keep OpenBLAS's own detection.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_AVX512 = {"avx512f", "avx512bw", "avx512dq", "avx512vl"}


def _cpu_vendor_and_flags(cpuinfo: str) -> tuple[str, set[str]]:
    vendor, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        if vendor and flags:
            break
    return vendor, flags


def kernel_family(cpuinfo: str) -> str | None:
    """The OpenBLAS core type to ask for, given the text of ``/proc/cpuinfo``; None to
    leave OpenBLAS's own detection alone."""
    vendor, flags = _cpu_vendor_and_flags(cpuinfo)
    if vendor != "GenuineIntel":
        return None
    if _AVX512 <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


def choose_before_loading() -> None:
    """Sets ``OPENBLAS_CORETYPE`` for this process when the user has not and it helps."""
    if "OPENBLAS_CORETYPE" in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        family = kernel_family(Path("/proc/cpuinfo").read_text())
    except OSError:
        return
    if family is not None:
        os.environ["OPENBLAS_CORETYPE"] = family


choose_before_loading()
