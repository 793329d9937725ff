"""Hyperparameter search on Optuna: samplers (random, grid, TPE), Hyperband pruning fed by
per-epoch validation loss, shared studies through storage URLs."""

from .pruning import OptunaPruning
from .search import METHODS, SearchResult, search, trials_table
from .spaces import DEFAULT_SPACES, grid_of, suggest

__all__ = [
    "DEFAULT_SPACES",
    "METHODS",
    "OptunaPruning",
    "SearchResult",
    "grid_of",
    "search",
    "suggest",
    "trials_table",
]
