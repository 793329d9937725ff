"""``seqlab.load``: restores any saved recipe model from its directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..serialization import read_toml


def load(path: str | Path) -> Any:
    """Loads a model saved by a recipe (``.save(path)`` or a run directory): a
    :class:`PoetryAutoencoder`, :class:`VectorPredictor`, :class:`Forecaster` or
    :class:`CodeOptimizer`.

    Raises:
        FileNotFoundError: ``path`` has no ``model_config.toml``.
        ValueError: the config names a kind of model this version does not know.
    """
    path = Path(path)
    config = path / "model_config.toml"
    if not config.is_file():
        raise FileNotFoundError(f"{path}: no model_config.toml (not a saved seqlab model)")
    kind = read_toml(config).get("kind")
    if kind == "poetry_autoencoder":
        from .poetry import PoetryAutoencoder

        return PoetryAutoencoder.load(path)
    if kind == "vector_predictor":
        from .vectors import VectorPredictor

        return VectorPredictor.load(path)
    if kind == "forecaster":
        from ..train.forecaster import Forecaster

        forecaster = Forecaster.load(path)
        forecaster.run_dir = path
        return forecaster
    if kind == "code_lm":
        from .code_lm import CodeLM

        return CodeLM.load(path)
    if kind == "code_optimizer":
        from .code_optimizer import CodeOptimizer

        return CodeOptimizer.load(path)
    raise ValueError(f"{config}: unknown model kind {kind!r}")
