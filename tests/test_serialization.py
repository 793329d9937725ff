"""Atomic files, checksummed bundles and TOML round trips."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from seqlab.serialization import (
    CorruptFileError,
    atomic_write_text,
    load_bundle,
    read_toml,
    save_bundle,
    write_json,
    write_toml,
)


def test_bundle_round_trip(tmp_path: Path) -> None:
    doc = {
        "epoch": 3,
        "model": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
        "state": [{"m": np.ones(2, np.float32), "step": 7}, None],
        "rng": {"state": 2**100 + 5},
        "name": "run",
        "flag": True,
    }
    path = tmp_path / "b.safetensors"
    save_bundle(path, doc)
    back = load_bundle(path)
    assert back["epoch"] == 3 and back["rng"]["state"] == 2**100 + 5 and back["state"][1] is None
    assert np.array_equal(back["model"]["w"], doc["model"]["w"])
    assert back["state"][0]["step"] == 7 and back["model"]["w"].dtype == np.float32
    assert not list(tmp_path.glob(".*tmp"))


def test_altered_and_truncated_bundles_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ck.safetensors"
    save_bundle(path, {"w": np.zeros(100, np.float32)})
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match="ck.safetensors: checksum mismatch"):
        load_bundle(path)
    path.write_bytes(bytes(raw[:50]))
    with pytest.raises(CorruptFileError, match="ck.safetensors"):
        load_bundle(path)
    with pytest.raises(FileNotFoundError):
        load_bundle(tmp_path / "missing.safetensors")


def test_toml_round_trip(tmp_path: Path) -> None:
    config = {
        "model": {
            "cell": "gru",
            "hidden": 64,
            "dropout": 0.1,
            "bidirectional": False,
            "sizes": [8, 16],
            "name with space": 'a "quoted" value',
        },
        "seed": 0,
        "skip": None,
    }
    write_toml(tmp_path / "c.toml", config)
    back = read_toml(tmp_path / "c.toml")
    expected = {k: v for k, v in config.items() if v is not None}
    assert back == expected
    atomic_write_text(tmp_path / "bad.toml", "a = [1,\n")
    with pytest.raises(ValueError, match="bad.toml: invalid TOML"):
        read_toml(tmp_path / "bad.toml")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        write_json(tmp_path / "b.json", {"a": 1})
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    for name in ("a.txt", "b.json", "plain.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
