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
from .random import get_rng_state, manual_seed, set_rng_state
from .threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

_RECIPES = {"forecaster", "poetry_autoencoder", "load", "sequence_demo", "vector_predictor"}


def __getattr__(name: str):  # the recipes load on first use: `import seqlab` stays light
    if name in _RECIPES:
        from . import recipes

        return getattr(recipes, name)
    raise AttributeError(f"module 'seqlab' has no attribute {name!r}")

__all__ = [
    "load",
    "poetry_autoencoder",
    "Tensor",
    "_core",
    "concatenate",
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
