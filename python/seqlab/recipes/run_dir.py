"""Run directories of the recipes: claimed before any expensive work, never overwritten,
resumed on the data they were trained on.

A recipe claims its run directory first (:func:`claim_run_dir`), which writes ``run.json``:
the recipe, its arguments and a description of its data source. Resuming
(:func:`resume_run`) reads it back, so a resumed run trains on the data it started on and
refuses other data unless told to take it. The errors raised here carry the advice for both
interfaces: their message speaks Python (``resume="runs/x"``), their :meth:`RunError.for_cli`
the ``seqlab`` command's flags (``--resume runs/x``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..serialization import read_toml, write_json

RUN_FILE = "run.json"
# recipe kind -> (Python function, ``seqlab`` subcommand, its run-directory argument in Python)
RECIPES: dict[str, tuple[str, str, str]] = {
    "poetry_autoencoder": ("seqlab.poetry_autoencoder", "poetry", "out"),
    "vector_predictor": ("seqlab.vector_predictor", "vectors", "out"),
    "forecaster": ("seqlab.forecaster", "forecast", "out_dir"),
    "code_optimizer": ("seqlab.code_optimizer", "code", "out"),
    "code_lm": ("seqlab.code_lm", "code-lm", "out"),
}


class RunError:
    """Mixin of the run-directory errors: ``for_cli()`` words the advice as command-line flags.

    Not an Exception itself, so :class:`TrainingInterrupted` stays a KeyboardInterrupt only
    (an ``except Exception`` does not swallow Ctrl-C)."""

    cli_message = ""

    def for_cli(self) -> str:
        return self.cli_message or str(self)


class RunExistsError(RunError, FileExistsError):
    """The run directory asked for already holds a run."""

    def __init__(self, path: Path, kind: str) -> None:
        function, command, out_arg = RECIPES[kind]
        super().__init__(
            f"{path} already holds a training run; continue it with {function}(resume={str(path)!r}), "
            f"or choose another {out_arg} (nothing was overwritten)"
        )
        self.cli_message = (
            f"{path} already holds a training run; continue it with `seqlab {command} --resume {path}`, "
            "or choose another --out (nothing was overwritten)"
        )
        self.path = path


class DataMismatchError(RunError, ValueError):
    """A resumed run was given data other than the data it was trained on."""

    def __init__(self, run_dir: Path, recorded: Mapping[str, Any], given: Mapping[str, Any]) -> None:
        what = f"{run_dir} was trained on {describe(recorded)}, not {describe(given)}"
        super().__init__(f"{what}; leave data out to resume on the run's own data, or pass "
                         "other_data=True to continue training on the new data")
        self.cli_message = (f"{what}; leave PATH out to resume on the run's own data, or add --other-data "
                            "to continue training on the new data")


class TrainingInterrupted(RunError, KeyboardInterrupt):
    """Training stopped by Ctrl-C; says where the last checkpoint is and how to resume."""

    def __init__(self, run_dir: Path, kind: str) -> None:
        function, command, _ = RECIPES[kind]
        found = last_checkpoint(run_dir)
        where = (f"the last checkpoint is {found}" if found is not None
                 else f"no checkpoint was written yet in {run_dir}")
        super().__init__(f"interrupted; {where}; continue with {function}(resume={str(run_dir)!r})")
        self.cli_message = f"interrupted; {where}; continue with: seqlab {command} --resume {run_dir}"
        self.run_dir = run_dir
        self.checkpoint = found


def new_run_dir(out: str | Path | None, kind: str) -> Path:
    """``out`` as given, or a new ``runs/<kind>-<YYYYmmdd-HHMMSS>`` (suffixed when taken)."""
    if out is not None:
        return Path(out)
    from ..distributed import broadcast_object, is_main

    if not is_main():  # every rank of a data-parallel run uses rank 0's directory
        return Path(broadcast_object(None))
    base = Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return Path(broadcast_object(str(path)))


# ------------------------------------------------------------------ data sources
def _fingerprint(obj: Any, h: Any) -> None:
    if isinstance(obj, np.ndarray):
        h.update(str(obj.dtype).encode() + repr(obj.shape).encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, (str, bytes)):
        h.update(obj.encode() if isinstance(obj, str) else obj)
    elif isinstance(obj, Mapping):
        for k in sorted(obj, key=str):
            h.update(str(k).encode())
            _fingerprint(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        h.update(f"[{len(obj)}".encode())
        for v in obj:
            _fingerprint(v, h)
    elif hasattr(obj, "__dict__"):
        _fingerprint(vars(obj), h)
    else:
        h.update(repr(obj).encode())


def data_source(data: Any) -> dict[str, Any]:
    """A JSON description of a recipe's ``data`` argument: the default, a file or folder
    (absolute path), a named built-in data set, or in-memory data (type and SHA-256)."""
    if data is None:
        return {"default": True}
    if isinstance(data, (str, Path)):
        p = Path(data).expanduser()
        return {"path": str(p.resolve())} if p.exists() else {"name": str(data)}
    path = getattr(data, "path", None)
    if isinstance(path, (str, Path)) and Path(path).exists():
        return {"path": str(Path(path).resolve())}
    h = hashlib.sha256()
    _fingerprint(data, h)
    return {"in_memory": type(data).__name__, "sha256": h.hexdigest()}


def describe(source: Mapping[str, Any]) -> str:
    """A data-source description in words."""
    if source.get("default"):
        return "the default data"
    if "path" in source:
        return source["path"]
    if "name" in source:
        return repr(source["name"])
    return f"in-memory {source.get('in_memory')} (sha256 {str(source.get('sha256'))[:12]})"


# ------------------------------------------------------------------ claiming and resuming
def claim_run_dir(out: str | Path | None, kind: str, data: Any, arguments: Mapping[str, Any]) -> Path:
    """The new run's directory, created with its ``run.json``; refuses (:class:`RunExistsError`)
    a directory that holds anything, before the recipe does any work."""
    from ..distributed import barrier

    path = new_run_dir(out, kind)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunExistsError(path, kind)
    barrier()  # every rank has looked before rank 0 writes run.json
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / RUN_FILE, {"kind": kind, "data": data_source(data), "arguments": dict(arguments)})
    return path


def read_run(run_dir: str | Path, kind: str) -> dict[str, Any]:
    """The ``run.json`` of a run to resume (empty for runs written before it existed).

    Raises:
        FileNotFoundError: ``run_dir`` is not a directory.
        ValueError: the run belongs to another recipe.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"resume: {run_dir} is not a run directory (it does not exist)")
    path = run_dir / RUN_FILE
    if not path.is_file():
        return {}
    record = json.loads(path.read_text())
    if record.get("kind") != kind:
        function, command, _ = RECIPES.get(record.get("kind"), ("?", "?", "?"))
        raise ValueError(f"resume: {run_dir} is a {record.get('kind')} run; resume it with {function} "
                         f"(`seqlab {command} --resume {run_dir}`)")
    return record


def resume_data(run_dir: Path, record: Mapping[str, Any], data: Any, other_data: bool) -> Any:
    """The data a resumed run trains on: the recorded source when ``data`` is None, ``data``
    when it is the same source (or ``other_data`` is set); otherwise :class:`DataMismatchError`."""
    recorded = record.get("data")
    if data is None:
        if recorded is None or recorded.get("default"):
            return None
        if "path" in recorded:
            return recorded["path"]
        if "name" in recorded:
            return recorded["name"]
        raise ValueError(f"resume: {run_dir} was trained on {describe(recorded)}; pass the same data again")
    if recorded is not None and not other_data and data_source(data) != recorded:
        raise DataMismatchError(run_dir, recorded, data_source(data))
    return data


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint file under ``run_dir`` (an ensemble's members included), or None."""
    found = list(Path(run_dir).rglob("checkpoints/epoch_*.safetensors"))
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


@contextmanager
def interruptible(run_dir: Path, kind: str) -> Iterator[None]:
    """Turns Ctrl-C during training into :class:`TrainingInterrupted` (the resume advice)."""
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:
        raise TrainingInterrupted(run_dir, kind) from None


def saved_config(run_dir: Path, kind: str, from_dict: Callable[[dict[str, Any]], Any],
                 make_preset: Callable[..., Any]) -> Any:
    """The config a run was started with: from its ``config.toml`` (written when training
    began) or else from the preset and overrides recorded in its ``run.json``."""
    if (run_dir / "config.toml").exists():
        saved = read_toml(run_dir / "config.toml").get("config")
        if saved:
            return from_dict(saved)
    arguments = read_run(run_dir, kind).get("arguments")
    if not arguments:
        raise ValueError(f"resume: {run_dir} holds no {kind} run (no config.toml or run.json)")
    if "config" in arguments:
        return from_dict(arguments["config"])
    return make_preset(arguments["preset"], **arguments.get("overrides", {}))


def resumed_config(run_dir: Path, kind: str, preset: str | None, overrides: Mapping[str, Any],
                   from_dict: Callable[[dict[str, Any]], Any], make_preset: Callable[..., Any]) -> Any:
    """A resumed run's config: the one it was started with (:func:`saved_config`), with
    ``epochs`` (the last epoch to train, counted from the run's start) taken from
    ``overrides``; another preset or any other changed setting is refused (ValueError).

    Configs are dataclasses with ``with_overrides`` (poetry, vectors)."""
    saved = saved_config(run_dir, kind, from_dict, make_preset)
    recorded = read_run(run_dir, kind).get("arguments", {}).get("preset")
    if preset is not None and recorded is not None and preset != recorded:
        raise ValueError(f"resume: {run_dir} was started with preset {recorded!r}, not {preset!r}")
    changed = sorted(k for k, v in overrides.items()
                     if k != "epochs" and saved.with_overrides(**{k: v}) != saved)
    if changed:
        raise ValueError(
            f"resume: {run_dir} continues with the settings it was started with; only epochs can "
            f"change on resume (got different {', '.join(changed)})"
        )
    return saved.with_overrides(epochs=overrides["epochs"]) if "epochs" in overrides else saved
