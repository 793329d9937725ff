"""Optuna, imported on demand with an error that names the install command."""

from __future__ import annotations

from types import ModuleType


def require_optuna() -> ModuleType:
    """The ``optuna`` module; ImportError naming ``pip install 'seqlab[tune]'`` when missing."""
    try:
        import optuna
    except ImportError as e:
        raise ImportError("hyperparameter search needs Optuna: pip install 'seqlab[tune]'") from e
    return optuna
