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
