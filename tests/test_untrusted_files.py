"""Untrusted files: fuzz-found inputs, hostile run directories, and no code run on load.

``tests/fuzz_inputs/`` holds inputs ``benchmarks/fuzz.py`` found leaking exceptions
outside a reader's contract (each now refused with a named ValueError).
"""

from __future__ import annotations

import pickle
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import seqlab
from seqlab.data.vector_chains import load_vector_chains
from seqlab.models.vectors.config import VectorPredictorConfig
from seqlab.models.vectors.model import NextVectorModel
from seqlab.recipes.vectors import VectorPredictor
from seqlab.serialization import read_toml, write_json, write_toml

ROOT = Path(__file__).resolve().parents[1]
FUZZ_INPUTS = Path(__file__).parent / "fuzz_inputs"
sys.path.insert(0, str(ROOT / "benchmarks"))
from fuzz import make_run_dir  # noqa: E402


@pytest.mark.parametrize("name", sorted(p.name for p in FUZZ_INPUTS.glob("npz-*.npz")))
def test_fuzz_found_npz_inputs_are_named_value_errors(name: str) -> None:
    """Damaged archives that leaked OSError (a seek to a negative offset),
    NotImplementedError (unknown compression method, zip version, flag bit 5) and
    RuntimeError (a member marked as encrypted), AttributeError (a member that is not a
    .npy file, which NumPy returns as bytes)."""
    path = FUZZ_INPUTS / name
    refused = r"((damaged|not a readable) \.npz archive|'\w+' is not a \.npy)"
    with pytest.raises(ValueError, match=rf"{name}: {refused}"):
        load_vector_chains(path)


@pytest.mark.parametrize("name, first, last", [("events-huge-span.json", "2024-05-01", "6601-05-01"),
                                               ("events-hang-span.jsonl", "2024-05-01", "2204-05-01")])
def test_fuzz_found_event_spans_are_refused_before_allocating(name: str, first: str, last: str) -> None:
    """One event far from the others made events_to_series allocate the minute buckets
    between them: 251 GiB (MemoryError) for the year 6601, a 10 GB array filled by a
    Python loop (a libFuzzer timeout) for 2204."""
    from seqlab.data.events import events_to_series, read_events

    with pytest.raises(ValueError, match=rf"spans \d+ buckets of 60 s \(from {first}.* to {last}.*"
                       r"more than max_buckets=1000000"):
        events_to_series(read_events(FUZZ_INPUTS / name), bucket_seconds=60.0)


@pytest.fixture(scope="module")
def poetry_dir(tmp_path_factory) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("saved") / "poetry")


@pytest.fixture(scope="module")
def vectors_dir(tmp_path_factory) -> Path:
    config = VectorPredictorConfig(hidden_size=8, cell="transformer", num_heads=2, context=6)
    seqlab.manual_seed(0)
    out = tmp_path_factory.mktemp("saved") / "vectors"
    return VectorPredictor(NextVectorModel(config, 4), config).save(out)


def _edit_config(src: Path, dst: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    shutil.copytree(src, dst)
    meta = read_toml(dst / "model_config.toml")
    edit(meta)
    write_toml(dst / "model_config.toml", meta)
    return dst


def _set(**values: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda meta: meta["config"].update(values)


HOSTILE_POETRY: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "huge hidden size": (_set(hidden_size=10**9), r"hidden_size = 1000000000 is not a size"),
    "huge embedding": (lambda m: m.update(embedding_dim=10**12), r"embedding_dim = 1000000000000"),
    "a million layers": (_set(num_layers=10**6), r"num_layers = 1000000"),
    "huge bottleneck": (_set(bottleneck=10**8), r"bottleneck = 100000000"),
    "size as text": (_set(hidden_size="32"), r"hidden_size must be a positive integer"),
    "negative size": (_set(hidden_size=-3), r"hidden_size must be a positive integer"),
    "code as cell": (_set(cell="__import__('os').system('true')"), r"cell must be one of"),
    "config not a table": (lambda m: m.update(config="x"), r"damaged or inconsistent \(AttributeError"),
    "no config": (lambda m: m.pop("config"), r"damaged or inconsistent \(KeyError: 'config'"),
    "no embedding_dim": (lambda m: m.pop("embedding_dim"), r"inconsistent \(KeyError: 'embedding_dim'"),
    "curriculum not a list": (_set(curriculum=5), r"damaged or inconsistent \(TypeError"),
    "unknown kind": (lambda m: m.update(kind="../../etc/passwd"), r"unknown model kind"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_POETRY))
def test_hostile_config_values_are_named_errors(poetry_dir: Path, tmp_path: Path, case: str) -> None:
    """Refused before any model is built: a huge size would otherwise allocate terabytes."""
    edit, message = HOSTILE_POETRY[case]
    run = _edit_config(poetry_dir, tmp_path / "run", edit)
    with pytest.raises(ValueError, match=message) as info:
        seqlab.load(run)
    assert str(run) in str(info.value)


@pytest.mark.parametrize("vocab", [{"tokens": {"a": 1}}, None, [1, 2], {"tokens": [1, 2, 3]},
                                   {"tokens": ["<pad>", "<unk>", "moon"]}])
def test_hostile_vocabulary_is_a_named_error(poetry_dir: Path, tmp_path: Path, vocab: Any) -> None:
    run = tmp_path / "run"
    shutil.copytree(poetry_dir, run)
    write_json(run / "vocabulary.json", vocab)
    with pytest.raises(ValueError, match=str(run)):
        seqlab.load(run)


@pytest.mark.parametrize("edit, message", [
    (_set(context=10**9), r"model_config\.toml: context = 1000000000 is not a size"),
    (_set(hidden_size=10**9), r"model_config\.toml: hidden_size = 1000000000 is not a size"),
    (_set(num_heads=10**7), r"hidden_size \(8\) divisible by num_heads"),
    (lambda m: m.update(dim=10**10), r"model_config\.toml: dim = 10000000000 is not a size"),
])
def test_hostile_vector_config_is_a_named_error(vectors_dir: Path, tmp_path: Path, edit, message) -> None:
    run = _edit_config(vectors_dir, tmp_path / "run", edit)
    with pytest.raises(ValueError, match=message) as info:
        seqlab.load(run)
    assert str(run) in str(info.value)


# ---------------------------------------------------------------- no code on load
_events: list[tuple[str, tuple[Any, ...]]] = []
_recording = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _recording:
        _events.append((event, args))


sys.addaudithook(_audit)


def test_loading_runs_no_code_and_opens_only_its_own_files(poetry_dir, vectors_dir, tmp_path, monkeypatch):
    """No unpickling (pickle's and NumPy's), no exec/compile/subprocess, and no file opened
    outside the run directory, even when its config names paths outside it."""
    global _recording
    run = _edit_config(poetry_dir, tmp_path / "run", lambda m: m["config"].update(
        embeddings="../../../../etc/passwd"))

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle used on the load path")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    real_np_load = np.load

    def np_load(*args: Any, **kwargs: Any) -> Any:
        assert not kwargs.get("allow_pickle"), "np.load with allow_pickle on the load path"
        return real_np_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", np_load)
    for directory in (run, vectors_dir):
        seqlab.load(directory)  # imports whatever the loader needs first
        _events.clear()
        _recording = True
        try:
            seqlab.load(directory)
        finally:
            _recording = False
        bad = [e for e, _ in _events if e.startswith(("pickle.", "exec", "compile", "subprocess", "os.system",
                                                       "os.exec", "os.posix_spawn", "ctypes.dlopen"))]
        assert not bad, bad
        opened = {Path(str(a[0])).resolve() for e, a in _events
                  if e == "open" and isinstance(a[0], (str, Path))}
        outside = [p for p in opened if directory.resolve() not in p.parents]
        assert not outside, outside
        assert any(p.name == "model_config.toml" for p in opened)
