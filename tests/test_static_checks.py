"""The static checks CI runs beside the tests: ruff over the project (the notebooks too), mypy
over the package.

mypy runs in the mode ``[tool.mypy]`` of pyproject.toml states (default mode, untyped
third-party packages as Any), so that a user's type checker believes what ``py.typed``
promises. Each check skips when its tool is not installed and fails with the tool's output.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> list[str]:
    """The command running ``name``: the module in this interpreter, else the one on PATH."""
    try:
        __import__(name)
        return [sys.executable, "-m", name]
    except ImportError:
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"{name} is not installed (pip install 'seqlab[dev]')")
        return [found]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd[2:] or cmd)} failed:\n{proc.stdout}\n{proc.stderr}"


def test_ruff_is_clean() -> None:
    _run([*_tool("ruff"), "check", "python", "tests", "benchmarks", "notebooks"])


@pytest.mark.slow
def test_mypy_is_clean_on_the_package() -> None:
    # the cache is per run dir so concurrent runs never share it; the config is pyproject's
    cache = Path(tempfile.gettempdir()) / f"seqlab-mypy-cache-{ROOT.name}"
    _run([*_tool("mypy"), "--cache-dir", str(cache), "python/seqlab"])
