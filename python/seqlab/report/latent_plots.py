"""Scatter plots of latent codes: PCA, and t-SNE with scikit-learn."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..serialization import atomic_write_figure
from .plots import require_matplotlib


def project(codes: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-d projection of codes (N, d) by ``"pca"`` or ``"tsne"`` (scikit-learn)."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or len(codes) < 2:
        raise ValueError(f"codes: expected (N >= 2, d), got shape {codes.shape}")
    if method == "pca":
        centered = codes - codes.mean(axis=0)
        _, _, vt = np.linalg.svd(centered, full_matrices=False)
        out = centered @ vt[:2].T
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError as e:
            raise ImportError("t-SNE plots need scikit-learn: pip install 'seqlab[poetry]'") from e
        perplexity = float(min(30, max(2, (len(codes) - 1) // 3)))
        return TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(codes)
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


def plot_latents(codes: np.ndarray, labels: Sequence[str] | None, path: str | Path, method: str = "pca",
                 seed: int = 0, top_labels: int = 8) -> Path:
    """Saves a 2-d scatter of codes, coloured by the ``top_labels`` most frequent labels."""
    plt = require_matplotlib()
    xy = project(codes, method, seed)
    fig, ax = plt.subplots(figsize=(7, 6))
    if labels is not None and len(labels) == len(xy):
        common = [name for name, _ in Counter(labels).most_common(top_labels)]
        other = np.array([lab not in common for lab in labels])
        if other.any():
            ax.scatter(xy[other, 0], xy[other, 1], s=6, c="lightgrey", label="other")
        for name in common:
            sel = np.array([lab == name for lab in labels])
            ax.scatter(xy[sel, 0], xy[sel, 1], s=8, label=name[:30])
        ax.legend(fontsize=7, markerscale=2, loc="best")
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=6)
    ax.set_title(f"latent codes ({method.upper()}, {codes.shape[1]}-d, {len(codes)} chunks)")
    fig.tight_layout()
    try:
        return atomic_write_figure(path, fig)
    finally:
        plt.close(fig)
