"""A short pass of the coverage-guided fuzzer (``benchmarks/fuzz.py``) over every reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import seqlab

ROOT = Path(__file__).resolve().parents[1]
RUNS = 2000
sys.path.insert(0, str(ROOT / "benchmarks"))
from fuzz import TARGETS  # noqa: E402


@pytest.mark.slow
def test_short_fuzz_pass_finds_nothing(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="the fuzzer needs atheris (pip install 'seqlab[dev]')")
    package_root = str(Path(seqlab.__file__).resolve().parents[1])  # the seqlab under test
    path = os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "fuzz.py"), "--runs", str(RUNS),
         "--out", str(tmp_path), "--table", str(tmp_path / "table.md")],
        capture_output=True, text=True, env=env, timeout=900,
    )
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert {r["target"] for r in rows} == set(TARGETS)
    for r in rows:
        assert r["executions"] >= RUNS, (r["target"], proc.stderr[-2000:])
        assert r["cov"] > 0, r["target"]
        assert not r["findings"], (r["target"], r["findings"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| poems |" in (tmp_path / "table.md").read_text()
