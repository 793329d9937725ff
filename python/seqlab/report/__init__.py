"""Run reports: ``training_metrics.png`` and ``training_report.md`` from a run directory.

Works on the plain files a run leaves (``training_metrics.json``, ``config.toml``), so
a report can be rebuilt at any time with :func:`write_report`.
"""

from .evaluation import METRIC_DEFINITIONS, EvaluationSummary, append_to_report, recipe_html
from .plots import plot_step_losses, plot_training_metrics
from .run_report import write_report

__all__ = ["METRIC_DEFINITIONS", "EvaluationSummary", "append_to_report", "plot_step_losses",
           "plot_training_metrics", "recipe_html", "write_report"]
