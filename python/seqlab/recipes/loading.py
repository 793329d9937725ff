"""``seqlab.load``: restores any saved recipe model from its directory.

A saved directory is untrusted input: it is read without pickle (safetensors, TOML,
JSON), its files are the fixed names inside it (no path in the config is opened), and
its config's model sizes are checked against the stored weights before a model is
built, so a hostile config cannot make the loader allocate without bound.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..serialization import load_weights, read_toml, save_weights, write_toml

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model_config.toml"
C = TypeVar("C")


def check_saved_sizes(config_path: Path, sizes: Mapping[str, Any], weights: Mapping[str, np.ndarray]) -> None:
    """Refuses model sizes the stored weights cannot hold, before anything is built.

    Every size of a model (widths, layer and head counts, context length) is at most the
    largest dimension of some stored weight or the number of stored weights, so a value
    above that bound comes from a damaged or hostile config.

    Raises:
        ValueError: naming ``config_path``, the setting, its value and the bound.
    """
    bound = max([len(weights), *(max(a.shape, default=1) for a in weights.values())])
    for name, value in sizes.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= bound:
            raise ValueError(
                f"{config_path}: {name} = {value!r} is not a size the saved weights can hold "
                f"(expected an integer from 1 to {bound})"
            )


def save_model_files(path: str | Path, kind: str, config: Any, weights: Mapping[str, np.ndarray],
                     **meta: Any) -> Path:
    """Writes the two files every saved recipe model has into the directory ``path``
    (created): ``model.safetensors`` (``weights``) and ``model_config.toml`` (``kind``, the
    ``meta`` entries and ``config.to_dict()``). Returns ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_weights(path / WEIGHTS_FILE, weights)
    write_toml(path / CONFIG_FILE, {"kind": kind, **meta, "config": config.to_dict()})
    return path


def read_model_files(
    path: str | Path,
    from_dict: Callable[[dict[str, Any]], C],
    sizes: Callable[[C, dict[str, Any]], Mapping[str, Any]],
) -> tuple[dict[str, Any], C, dict[str, np.ndarray]]:
    """The ``(meta, config, weights)`` of :func:`save_model_files`; the config's model
    sizes (``sizes(config, meta)``) are checked against the weights
    (:func:`check_saved_sizes`) before the caller builds anything."""
    path = Path(path)
    meta = read_toml(path / CONFIG_FILE)
    config = from_dict(meta["config"])
    weights = load_weights(path / WEIGHTS_FILE)
    check_saved_sizes(path / CONFIG_FILE, sizes(config, meta), weights)
    return meta, config, weights


def saved_evaluation(path: str | Path) -> dict[str, Any] | None:
    """The ``evaluation.json`` a run directory holds, or None."""
    file = Path(path) / "evaluation.json"
    return json.loads(file.read_text()) if file.is_file() else None


def load(path: str | Path) -> Any:
    """Loads a model saved by a recipe (``.save(path)`` or a run directory): a
    :class:`PoetryAutoencoder`, :class:`VectorPredictor`, :class:`Forecaster` or
    :class:`CodeOptimizer`.

    Raises:
        FileNotFoundError: ``path`` has no ``model_config.toml`` (or a file it needs).
        ValueError: a file is damaged or inconsistent (named with the cause), or the
            config names a kind of model this version does not know.
    """
    path = Path(path)
    config = path / "model_config.toml"
    if not config.is_file():
        raise FileNotFoundError(f"{path}: no model_config.toml (not a saved seqlab model)")
    kind = read_toml(config).get("kind")
    if kind == "poetry_autoencoder":
        from .poetry import PoetryAutoencoder as Model
    elif kind == "vector_predictor":
        from .vectors import VectorPredictor as Model  # type: ignore[assignment]
    elif kind == "forecaster":
        from ..train.forecaster import Forecaster as Model  # type: ignore[assignment]
    elif kind == "code_lm":
        from .code_lm import CodeLM as Model  # type: ignore[assignment]
    elif kind == "code_optimizer":
        from .code_optimizer import CodeOptimizer as Model  # type: ignore[assignment]
    else:
        raise ValueError(f"{config}: unknown model kind {kind!r}")
    try:
        model = Model.load(path)
    except ValueError as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"{path}: {e}") from e  # a config or vocabulary value refused
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        # a field missing or of the wrong type in the config or the vocabulary
        raise ValueError(
            f"{path}: the saved model is damaged or inconsistent ({type(e).__name__}: {e})"
        ) from e
    if kind == "forecaster":
        model.run_dir = path
    return model
