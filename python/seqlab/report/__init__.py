"""Run reports: ``training_metrics.png`` and ``training_report.md`` from a run directory.

Works on the plain files a run leaves (``training_metrics.json``, ``config.toml``), so
a report can be rebuilt at any time with :func:`write_report`.
"""

from .plots import plot_step_losses, plot_training_metrics
from .run_report import write_report

__all__ = ["plot_step_losses", "plot_training_metrics", "write_report"]
