"""PNG plots of a run's history (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..serialization import atomic_write_figure


def require_matplotlib() -> Any:
    """matplotlib.pyplot on the Agg backend, or ImportError naming the install command."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plots need matplotlib: pip install 'seqlab[plot]'") from e
    return plt


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in history:
        v = row.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(int(row["epoch"]))
            ys.append(float(v))
    return xs, ys


def plot_training_metrics(
    history: Sequence[Mapping[str, Any]], path: str | Path, steps: Sequence[Mapping[str, Any]] = ()
) -> Path:
    """Draws losses, each validation metric, the learning rate and gradient norms into one PNG."""
    plt = require_matplotlib()
    keys = sorted({k for row in history for k in row})
    metric_keys = [k for k in keys if k.startswith("val_") and k != "val_loss"]
    panels: list[tuple[str, list[str]]] = [("loss", [k for k in ("train_loss", "val_loss") if k in keys])]
    panels += [(k, [k]) for k in metric_keys]
    panels.append(("learning rate", ["lr"]))
    if any("grad_norm" in s for s in steps) or "grad_norm_mean" in keys:
        panels.append(("gradient norm", ["grad_norm_mean", "grad_norm_max"]))
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
    for ax, (title, series) in zip(axes.ravel(), panels):
        if title == "gradient norm" and steps:
            xs = [s["step"] for s in steps if "grad_norm" in s]
            ys = [s["grad_norm"] for s in steps if "grad_norm" in s]
            ax.plot(xs, ys, lw=0.8, label="per step")
            ax.set_xlabel("step")
            ax.set_yscale("log")
        else:
            for key in series:
                xs, ys = _series(history, key)
                if xs:
                    ax.plot(xs, ys, marker="o", ms=3, label=key)
            ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    try:
        return atomic_write_figure(path, fig)
    finally:
        plt.close(fig)


def plot_step_losses(steps: Sequence[Mapping[str, Any]], path: str | Path, window: int = 20) -> Path:
    """The training loss of every optimizer step with its moving average over ``window`` steps."""
    plt = require_matplotlib()
    xs = [int(s["step"]) for s in steps if isinstance(s.get("loss"), float) and math.isfinite(s["loss"])]
    ys = [float(s["loss"]) for s in steps if isinstance(s.get("loss"), float) and math.isfinite(s["loss"])]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(xs, ys, lw=0.6, alpha=0.5, label="per step")
    if len(ys) >= window:
        smooth = [sum(ys[i - window + 1 : i + 1]) / window for i in range(window - 1, len(ys))]
        ax.plot(xs[window - 1 :], smooth, lw=1.5, label=f"mean of {window}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        return atomic_write_figure(path, fig)
    finally:
        plt.close(fig)
