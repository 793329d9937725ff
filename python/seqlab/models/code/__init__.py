"""The code optimizer's baselines and evaluation (the pointer-generator model joins them)."""

from .baselines import NearestBody, NGramCompleter, NGramModel, NGramReranker, unchanged
from .evaluate import baseline_scores, evaluate_outputs, real_edit_scores, task_scores

__all__ = [
    "NGramCompleter",
    "NGramModel",
    "NGramReranker",
    "NearestBody",
    "baseline_scores",
    "evaluate_outputs",
    "real_edit_scores",
    "task_scores",
    "unchanged",
]
