"""The OpenBLAS kernel family chosen before the core loads (python/seqlab/_blas_kernels.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from seqlab._blas_kernels import kernel_family

ROOT = Path(__file__).resolve().parents[1]


def _cpuinfo(vendor: str, flags: str) -> str:
    return f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: {flags}\n\nprocessor\t: 1\n"


def test_intel_families_by_features():
    avx512 = "sse4_2 avx2 fma avx512f avx512bw avx512dq avx512vl"
    assert kernel_family(_cpuinfo("GenuineIntel", avx512)) == "SkylakeX"
    assert kernel_family(_cpuinfo("GenuineIntel", "sse4_2 avx2 fma avx512f")) == "Haswell"
    assert kernel_family(_cpuinfo("GenuineIntel", "sse4_2 avx")) is None


def test_other_vendors_keep_openblas_detection():
    assert kernel_family(_cpuinfo("AuthenticAMD", "avx2 fma avx512f avx512bw avx512dq avx512vl")) is None
    assert kernel_family("") is None


def test_user_choice_is_kept():
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell", PYTHONPATH=str(ROOT / "python"))
    out = subprocess.run(
        [sys.executable, "-c", "import os, seqlab; print(os.environ['OPENBLAS_CORETYPE'])"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "Haswell"


def test_core_runs_a_kernel_family_that_fits_the_cpu():
    """On an Intel CPU with AVX2 or AVX-512, OpenBLAS runs the family chosen for it (not its
    generic fallback)."""
    import seqlab

    expected = kernel_family(Path("/proc/cpuinfo").read_text()) if Path("/proc/cpuinfo").exists() else None
    if "OPENBLAS_CORETYPE" in os.environ and os.environ["OPENBLAS_CORETYPE"] != expected:
        expected = os.environ["OPENBLAS_CORETYPE"]
    family = seqlab._core.blas_kernel_family()
    if expected is None:
        assert family  # whatever OpenBLAS detected, it names it
    else:
        assert family.lower() == expected.lower()
