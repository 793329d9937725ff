"""Comparing poetry autoencoders: cells x bottleneck sizes x attention on one corpus."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.poems import PoemCorpus, load_poems
from ..models.poetry.config import preset as make_preset
from ..serialization import atomic_write_figure, atomic_write_text, write_json
from .poetry import fit_poetry_autoencoder
from .run_dir import new_run_dir

METRICS = ("token_cosine", "sequence_cosine", "word_top1", "word_top5", "bottleneck_active_dims")


def compare(
    data: str | Path | PoemCorpus | None = None,
    cells: Sequence[str] = ("rnn", "lstm", "gru"),
    bottlenecks: Sequence[int] = (8, 12, 16, 20, 24),
    attention: Sequence[bool] = (False, True),
    preset: str = "small",
    out: str | Path | None = None,
    verbose: bool = True,
    preset_name: str | None = None,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Trains one autoencoder per (cell, bottleneck, attention) and tabulates their evaluation.

    Every run gets its own directory under ``out`` (default ``runs/poetry_compare-<time>``);
    the table goes to ``comparison.json``, ``comparison.md`` and ``comparison.png`` there.
    Each row holds the held-out metrics of the bottleneck alone and, for attention models,
    with attention.

    ``preset`` names the preset every run starts from (``preset_name`` is its deprecated
    spelling).

    Returns the rows (dicts with cell, bottleneck, attention, decoding and the metrics).
    """
    if preset_name is not None:
        warnings.warn("compare(preset_name=...) is deprecated; use preset=...", DeprecationWarning,
                      stacklevel=2)
        preset = preset_name
    root = new_run_dir(out, "poetry_compare")
    corpus = data if isinstance(data, PoemCorpus) else load_poems(data)
    rows: list[dict[str, Any]] = []
    grid = list(itertools.product(cells, bottlenecks, attention))
    for i, (cell, size, att) in enumerate(grid, start=1):
        name = f"{cell}-b{size}-{'attention' if att else 'plain'}"
        if verbose:
            print(f"[{i}/{len(grid)}] {name}", flush=True)
        config = make_preset(preset, cell=cell, bottleneck=size, attention=att, **overrides)
        fitted = fit_poetry_autoencoder(corpus, config, out=root / name, progress=False, verbose=False)
        for decoding, result in fitted.evaluation.items():
            rows.append(
                {
                    "run": name,
                    "cell": cell,
                    "bottleneck": size,
                    "attention": att,
                    "decoding": decoding,
                    **{m: result[m] for m in METRICS},
                }
            )
    write_json(root / "comparison.json", rows)
    header = ["run", "decoding", *METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append(
            "| " + " | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in header) + " |"
        )
    atomic_write_text(root / "comparison.md", "\n".join(lines) + "\n")
    _plot(rows, root / "comparison.png")
    if verbose:
        print("\n".join(lines))
        print(f"comparison: {root / 'comparison.md'}")
    return rows


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    from ..report.plots import require_matplotlib

    plt = require_matplotlib()
    labels = [f"{r['run']}\n{r['decoding']}" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 0.5 * len(rows) + 4), 4))
    for ax, metric in zip(axes, ("token_cosine", "word_top1")):
        ax.bar(
            range(len(rows)),
            [r[metric] for r in rows],
            color=["tab:orange" if r["decoding"] == "with_attention" else "tab:blue" for r in rows],
        )
        ax.set_xticks(range(len(rows)), labels, rotation=70, fontsize=6)
        ax.set_title(metric.replace("_", " "))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    try:
        atomic_write_figure(path, fig)
    finally:
        plt.close(fig)
