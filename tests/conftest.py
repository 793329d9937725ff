"""Shared test fixtures: torch (skipped cleanly when absent), the real data folder, seeding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import seqlab

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def torch():
    """PyTorch, single-threaded and seeded; tests needing it skip when it is not installed."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed() -> None:
    seqlab.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    """The real-data folder beside the project (../shared/data); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not present")
    return SHARED_DATA


def central_difference(loss, array: np.ndarray, index, step: float) -> float:
    """(loss() with array[index] + step  -  loss() with array[index] - step) / (2 step), in
    place on ``array`` (restored afterwards): the numerical derivative a gradient is checked
    against."""
    saved = array[index]
    array[index] = saved + step
    up = loss()
    array[index] = saved - step
    down = loss()
    array[index] = saved
    return (up - down) / (2 * step)


# Hypothesis profiles of the property tests (tests/test_properties_*.py): "ci", the
# default, draws few examples and the same ones every run (derandomized), "long"
# (HYPOTHESIS_PROFILE=long) many more, from fresh random draws, for local runs.
try:
    import os

    from hypothesis import HealthCheck, settings

    _common = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                          HealthCheck.too_slow])
    settings.register_profile("ci", max_examples=20, derandomize=True, **_common)
    settings.register_profile("long", max_examples=400, **_common)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # the property tests skip without hypothesis
    pass
