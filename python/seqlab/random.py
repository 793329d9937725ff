"""The seeded random generator behind dropout, initialisation and shuffling.

``seqlab.manual_seed(s)`` makes every later draw reproducible: the same seed and
thread count give bit-identical training.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

_state = threading.local()
_DEFAULT_SEED = 0


def manual_seed(seed: int) -> None:
    """Seeds the generator used by initialisation, dropout and data shuffling."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative integer, got {seed!r}")
    _state.generator = np.random.default_rng(int(seed))


def generator() -> np.random.Generator:
    """The current generator (seeded with 0 until ``manual_seed`` is called)."""
    gen = getattr(_state, "generator", None)
    if gen is None:
        gen = np.random.default_rng(_DEFAULT_SEED)
        _state.generator = gen
    return gen


def get_rng_state() -> dict[str, Any]:
    """The generator's state, for checkpoints."""
    return dict(generator().bit_generator.state)


def set_rng_state(state: dict) -> None:
    """Restores a state returned by :func:`get_rng_state`."""
    generator().bit_generator.state = state
