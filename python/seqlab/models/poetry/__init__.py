"""The poetry autoencoder: config and presets, data preparation, model, evaluation.

``compare`` (cells x bottleneck sizes x attention) trains whole runs, so it lives with the
recipes; it is re-exported here under the name the recipe's documentation uses.
"""

from typing import Any

from .config import PRESETS, AutoencoderConfig, preset
from .model import SequenceAutoencoder


def compare(*args: Any, **kwargs: Any) -> Any:
    """See :func:`seqlab.recipes.poetry_compare.compare`."""
    from ...recipes.poetry_compare import compare as run

    return run(*args, **kwargs)


__all__ = ["PRESETS", "AutoencoderConfig", "SequenceAutoencoder", "compare", "preset"]
