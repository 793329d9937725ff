"""Crash-safe files: atomic writes, checksummed safetensors bundles, TOML configs.

Every file seqlab writes goes through :func:`atomic_write_bytes`: the bytes go to a
temporary file in the same directory, are fsync'ed, and the file is renamed over the
target (then the directory is fsync'ed). A process killed at any instant leaves
either the old file or the new one, never a torn one.

A *bundle* is one safetensors file holding named float/int arrays plus a JSON
document (nested dicts and lists whose leaves may be arrays), with a SHA-256 over
everything: a truncated or altered file is refused with an error naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_ARRAY_KEY = "__array__"
_CHECKSUM_KEY = "seqlab.sha256"
_DOC_KEY = "seqlab.document"


class CorruptFileError(ValueError):
    """A file seqlab wrote was truncated or altered on disk."""


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (temporary file, fsync, rename, fsync dir).

    The file gets the mode any newly created file of the user gets (0666 less the umask),
    not the 0600 of the temporary file it is written through. Under MPI with several ranks
    only rank 0 writes (the others return at once), so a recipe run by every rank writes
    each of its files once.

    Raises:
        OSError: the write failed (a full disk, a file-size limit, no permission); the
            message names ``path``, and the file that was there before is unchanged.
    """
    from .distributed.comm import is_main

    if not is_main():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.errno is not None:
            raise OSError(
                e.errno, f"{path}: writing {len(data)} bytes failed ({e.strerror}); the file as it was "
                "before is unchanged"
            ) from e
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Writes UTF-8 text atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_figure(path: str | os.PathLike[str], fig: Any, dpi: int = 100) -> Path:
    """Writes a matplotlib figure atomically, in the format its suffix names (PNG by default)."""
    import io

    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return path


# ---------------------------------------------------------------- documents
def _split_arrays(obj: Any, arrays: dict[str, np.ndarray], prefix: str) -> Any:
    """Replaces arrays inside nested dicts/lists by references, collecting them."""
    if isinstance(obj, np.ndarray):
        key = prefix or "root"
        arrays[key] = np.ascontiguousarray(obj)
        return {_ARRAY_KEY: key}
    if isinstance(obj, Mapping):
        return {
            str(k): _split_arrays(v, arrays, f"{prefix}.{k}" if prefix else str(k)) for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [_split_arrays(v, arrays, f"{prefix}.{i}" if prefix else str(i)) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _join_arrays(obj: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_ARRAY_KEY}:
            return arrays[obj[_ARRAY_KEY]]
        return {k: _join_arrays(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_arrays(v, arrays) for v in obj]
    return obj


def _digest(arrays: Mapping[str, np.ndarray], document: str) -> str:
    h = hashlib.sha256()
    h.update(document.encode("utf-8"))
    for key in sorted(arrays):
        a = arrays[key]
        h.update(key.encode("utf-8"))
        h.update(str(a.dtype).encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_bundle(path: str | os.PathLike[str], document: Mapping[str, Any]) -> None:
    """Saves a nested document whose leaves may be ndarrays as one checksummed file.

    Arrays are stored as safetensors tensors (named by their path in the document);
    everything else is stored as JSON in the file's metadata.
    """
    from safetensors.numpy import save

    arrays: dict[str, np.ndarray] = {}
    skeleton = _split_arrays(dict(document), arrays, "")
    text = json.dumps(skeleton, sort_keys=True)
    metadata = {_DOC_KEY: text, _CHECKSUM_KEY: _digest(arrays, text)}
    atomic_write_bytes(path, save(arrays, metadata=metadata))


def load_bundle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a file written by :func:`save_bundle`, verifying its checksum.

    Raises:
        FileNotFoundError: the file does not exist.
        CorruptFileError: the file is truncated, altered, or not a seqlab bundle.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    raw = path.read_bytes()
    try:
        arrays = load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len])
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError) as e:
        raise CorruptFileError(f"{path}: not a readable safetensors file ({e})") from e
    metadata = header.get("__metadata__") or {}
    text = metadata.get(_DOC_KEY)
    checksum = metadata.get(_CHECKSUM_KEY)
    if text is None or checksum is None:
        raise CorruptFileError(f"{path}: not a seqlab bundle (no document or checksum in its header)")
    if _digest(arrays, text) != checksum:
        raise CorruptFileError(f"{path}: checksum mismatch, the file was altered or damaged")
    return _join_arrays(json.loads(text), arrays)


# -------------------------------------------------------------------- TOML
# A safetensors header larger than this is refused before anything is allocated for it
# (the safetensors library's own limit).
MAX_HEADER_BYTES = 100_000_000


def save_weights(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> None:
    """Writes named arrays as one safetensors file, atomically."""
    from safetensors.numpy import save

    atomic_write_bytes(path, save(dict(arrays)))


def load_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Reads a safetensors file of named arrays (never pickle: loading executes no code).

    Raises:
        FileNotFoundError: the file does not exist.
        CorruptFileError: the file is truncated, damaged, or its header is malformed or
            larger than the file (refused before anything is allocated for it).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise CorruptFileError(f"{path}: not a safetensors file ({size} bytes, no 8-byte header length)")
    header_len = int.from_bytes(head, "little")
    if header_len > min(size - 8, MAX_HEADER_BYTES):
        raise CorruptFileError(
            f"{path}: not a readable safetensors file (a header of {header_len} bytes in {size} bytes)"
        )
    try:
        return load_file(path)
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError) as e:
        raise CorruptFileError(f"{path}: not a readable safetensors file ({e})") from e


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if f != f:
            return "nan"
        if f in (float("inf"), float("-inf")):
            return "inf" if f > 0 else "-inf"
        return repr(f)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic strings
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if v is None:
        raise ValueError("TOML has no null: leave the key out instead")
    raise TypeError(f"cannot write a value of type {type(v).__name__} to TOML")


def to_toml(config: Mapping[str, Any]) -> str:
    """Serialises nested dicts of numbers, strings, booleans and lists to TOML.

    Keys whose value is None are left out (TOML has no null).
    """
    lines: list[str] = []

    def table(d: Mapping[str, Any], name: str) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, Mapping) and v is not None}
        subtables = {k: v for k, v in d.items() if isinstance(v, Mapping)}
        if name and (scalars or not subtables):
            lines.append(f"\n[{name}]")
        for k, v in scalars.items():
            lines.append(f"{json.dumps(str(k))} = {_toml_value(v)}")
        for k, v in subtables.items():
            table(v, f"{name}.{json.dumps(str(k))}" if name else json.dumps(str(k)))

    table(config, "")
    return "\n".join(lines).lstrip("\n") + "\n"


def write_toml(path: str | os.PathLike[str], config: Mapping[str, Any]) -> None:
    """Writes a config as TOML, atomically."""
    atomic_write_text(path, to_toml(config))


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a TOML file; a syntax error names the file and line."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: invalid TOML ({e})") from e


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Writes JSON (NumPy scalars and arrays converted), atomically."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"cannot write {type(o).__name__} to JSON")

    atomic_write_text(path, json.dumps(obj, indent=2, default=default, allow_nan=True) + "\n")
