"""seqlab: sequence models on the CPU with PyTorch-exact SIMD C++ kernels.

Quick tour::

    import seqlab
    x = seqlab.tensor(np.random.randn(16, 50, 32), requires_grad=True)   # (B, T, C)
    lstm = seqlab.nn.LSTM(32, 64, num_layers=2)
    out, (h, c) = lstm(x)                                                  # (B, T, 64)
    out.sum().backward()
"""

from __future__ import annotations

# _blas first: it loads the OpenBLAS that _core's BLAS symbols resolve against
from . import _blas, _core, functional, losses, metrics, nn, optim  # noqa: F401
from .autograd import Tensor, concatenate, is_grad_enabled, no_grad, stack, tensor
from .cpu_dispatch import cpu_info
from .random import get_rng_state, manual_seed, set_rng_state
from .threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

_RECIPES = {"code_lm", "code_optimizer", "forecaster", "poetry_autoencoder", "load", "sequence_demo",
            "vector_predictor"}
# Subpackages imported on first use (``seqlab.data``, ``seqlab.train``, ...): `import seqlab` stays light.
_SUBMODULES = {"data", "models", "recipes", "report", "serialization", "train", "tune"}


def __getattr__(name: str):
    if name in _RECIPES:
        from . import recipes

        return getattr(recipes, name)
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'seqlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _RECIPES | _SUBMODULES)


__all__ = [
    "code_lm",
    "load",
    "poetry_autoencoder",
    "sequence_demo",
    "Tensor",
    "_core",
    "code_optimizer",
    "concatenate",
    "cpu_info",
    "forecaster",
    "functional",
    "get_num_threads",
    "get_rng_state",
    "is_grad_enabled",
    "losses",
    "manual_seed",
    "nn",
    "metrics",
    "no_grad",
    "optim",
    "set_num_threads",
    "set_rng_state",
    "stack",
    "tensor",
    "vector_predictor",
]
