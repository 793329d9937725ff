"""training_report.md: a summary of a run with links to its files."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from ..serialization import atomic_write_text
from .plots import plot_training_metrics


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def write_report(run_dir: str | Path) -> Path:
    """Writes ``training_metrics.png`` and ``training_report.md`` for a run directory.

    Reads ``training_metrics.json`` (written by the Trainer). Without matplotlib the
    PNG is left out with a warning naming the install command. Returns the report path.
    Under MPI only rank 0 writes (the files are its own); the other ranks return at once.
    """
    from ..distributed import is_main

    run_dir = Path(run_dir)
    if not is_main():
        return run_dir / "training_report.md"
    metrics_path = run_dir / "training_metrics.json"
    try:
        doc = json.loads(metrics_path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{metrics_path}: no training metrics to report on") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{metrics_path}: invalid JSON at line {e.lineno} ({e.msg})") from e
    history = doc.get("history", [])
    png = run_dir / "training_metrics.png"
    have_png = False
    try:
        plot_training_metrics(history, png, doc.get("steps", []))
        have_png = True
    except ImportError as e:
        warnings.warn(f"{e}; {png.name} not written", RuntimeWarning, stacklevel=2)

    best = doc.get("best", {})
    timing = doc.get("timing", {})
    lines = [f"# Training report: {run_dir.name}", ""]
    if best.get("epoch") is not None:
        lines.append(
            f"Best epoch **{best['epoch']}** of {len(history)}: "
            f"{best['monitor']} = **{_fmt(best['value'])}**."
        )
    lines.append(
        f"Trained {timing.get('steps', '?')} steps in {_fmt(timing.get('train_seconds', 0.0))} s "
        f"on {doc.get('threads', '?')} threads "
        f"(seqlab {doc.get('versions', {}).get('seqlab', '?')})."
    )
    lines.append("")
    if history:
        keys = [k for k in history[0] if k != "epoch" and isinstance(history[0][k], (int, float))]
        lines.append("| epoch | " + " | ".join(keys) + " |")
        lines.append("|---|" + "---|" * len(keys))
        for row in history:
            lines.append(f"| {row['epoch']} | " + " | ".join(_fmt(row.get(k, "")) for k in keys) + " |")
        lines.append("")
    if have_png:
        lines += [f"![training metrics]({png.name})", ""]
    if doc.get("messages"):
        lines += ["## Messages", ""] + [f"- {m}" for m in doc["messages"]] + [""]
    lines += ["## Files", ""]
    for name, what in (
        ("training_metrics.json", "per-epoch history, per-step losses and gradient norms, config, versions"),
        ("training_metrics.png", "loss, metric, learning-rate and gradient-norm curves"),
        ("model.safetensors", "final weights (the best epoch's when early stopping restored them)"),
        ("config.toml", "trainer settings and model config"),
        ("checkpoints/", "resumable checkpoints"),
    ):
        if (run_dir / name.rstrip("/")).exists():
            lines.append(f"- [{name}]({name}): {what}")
    report = run_dir / "training_report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report
