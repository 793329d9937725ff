"""Search spaces: the default per model, and how a space is turned into Optuna suggestions.

A space maps a :class:`~seqlab.models.forecast.ForecastConfig` field to one of:

* a list of choices: ``[16, 32, 64]`` (categorical);
* ``("int", low, high)`` or ``("int", low, high, "log")``;
* ``("float", low, high)`` or ``("float", low, high, "log")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SpaceSpec = Any

DEFAULT_SPACES: dict[str, dict[str, SpaceSpec]] = {
    "lstm": {
        "hidden_size": [16, 32, 64, 128],
        "num_layers": [1, 2],
        "decoder": ["mlp", "recurrent"],
        "dropout": [0.0, 0.1, 0.2],
        "lr": ("float", 1e-4, 1e-2, "log"),
    },
    "tcn": {
        "channels": [16, 32, 64],
        "kernel_size": [2, 3, 5],
        "dropout": [0.0, 0.1, 0.2],
        "lr": ("float", 1e-4, 1e-2, "log"),
    },
    "nbeats": {
        "stack_type": ["generic", "interpretable"],
        "width": [64, 128, 256, 512],
        "n_stacks": [2, 4, 8],
        "lr": ("float", 1e-4, 1e-2, "log"),
    },
}


def check_space(space: Mapping[str, SpaceSpec], known: set[str]) -> None:
    """Raises ValueError naming an unknown parameter or a malformed entry."""
    for name, spec in space.items():
        if name not in known:
            raise ValueError(f"space: unknown parameter {name!r}; known: {sorted(known)}")
        if isinstance(spec, list):
            if not spec:
                raise ValueError(f"space[{name!r}]: the list of choices is empty")
            continue
        ok = (
            isinstance(spec, tuple)
            and len(spec) in (3, 4)
            and spec[0] in ("int", "float")
            and spec[1] <= spec[2]
            and (len(spec) == 3 or spec[3] == "log")
        )
        if not ok:
            raise ValueError(
                f"space[{name!r}]: expected a list of choices or ('int'|'float', low, high[, 'log']), "
                f"got {spec!r}"
            )


def suggest(trial: Any, space: Mapping[str, SpaceSpec], prefix: str = "") -> dict[str, Any]:
    """Samples every parameter of ``space`` from an Optuna trial (define-by-run)."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        key = prefix + name
        if isinstance(spec, list):
            params[name] = trial.suggest_categorical(key, spec)
        elif spec[0] == "int":
            params[name] = trial.suggest_int(key, int(spec[1]), int(spec[2]), log=len(spec) == 4)
        else:
            params[name] = trial.suggest_float(key, float(spec[1]), float(spec[2]), log=len(spec) == 4)
    return params


def grid_of(space: Mapping[str, SpaceSpec]) -> dict[str, list[Any]]:
    """The finite grid of a space (int ranges enumerated); float ranges are refused."""
    grid: dict[str, list[Any]] = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            grid[name] = list(spec)
        elif spec[0] == "int" and spec[2] - spec[1] <= 64:
            grid[name] = list(range(int(spec[1]), int(spec[2]) + 1))
        else:
            raise ValueError(
                f"grid search: space[{name!r}] = {spec!r} is not a finite list; give explicit choices"
            )
    return grid
