"""A recipe's held-out figures beside its baselines, explained: the one summary every recipe
writes into ``training_report.md``, prints, and shows in Jupyter.

:class:`EvaluationSummary` takes whatever rows a recipe passes (the model's, then each
baseline's, on the same held-out samples) and renders them with the held-out sample count
(flagged when under :data:`SMALL_SAMPLE` items) and a definition of every metric shown
(:data:`METRIC_DEFINITIONS`).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SMALL_SAMPLE = 200

# Definitions of the metrics the recipes report; ``{name}`` fields are filled from
# EvaluationSummary.parameters (defaults in DEFAULT_PARAMETERS).
METRIC_DEFINITIONS: dict[str, str] = {
    "token_cosine": "mean over held-out tokens of the cosine between the reconstructed and the true word "
                    "vector (1 = same direction, 0 = unrelated)",
    "token_cosine_uncentred": "the token cosine on the original, uncentred word vectors (predictions "
                              "mapped back with the mean vector and the mean norm), the measure of the "
                              "original project, where the mean vector alone scores high",
    "sequence_cosine": "mean over held-out chunks of the cosine between the mean of the reconstructed "
                       "vectors and the mean of the true vectors of the chunk",
    "mse": "mean squared error between prediction and truth, averaged over every value",
    "rmse": "square root of the MSE",
    "mae": "mean absolute error between prediction and truth, in the data's units",
    "r2": "coefficient of determination, 1 - SSE / total sum of squares (1 is perfect, 0 is "
          "predicting the mean of the truth, below 0 is worse than that)",
    "smape": "symmetric mean absolute percentage error, mean of 2|p - y| / (|p| + |y|), in percent",
    "windows": "held-out forecast windows the row is scored on: every test window, or for exp_smoothing "
               "and model_at_es_origins the test origins at which Holt-Winters is refitted",
    "word_top1": "share of held-out tokens whose reconstructed vector's nearest vocabulary word (by "
                 "cosine) is the true word",
    "word_top5": "share of held-out tokens whose true word is among the 5 vocabulary words nearest (by "
                 "cosine) to the reconstructed vector",
    "bottleneck_active_dims": "code dimensions whose variance over the held-out chunks exceeds "
                              "{active_threshold} (Burda et al.'s active units)",
    "bottleneck_participation_ratio": "effective number of code dimensions used: (sum of the codes' "
                                      "covariance eigenvalues)^2 / sum of their squares, between 1 and the "
                                      "bottleneck size; it counts spread directions however small, so it "
                                      "can exceed the active dimensions",
    "hit@1": "share of held-out windows whose true next vector ranks first among every vector of the "
             "bank, by cosine to the prediction",
    "hit@5": "share of held-out windows whose true next vector is among the 5 bank vectors nearest (by "
             "cosine) to the prediction",
    "hit@10": "share of held-out windows whose true next vector is among the 10 bank vectors nearest (by "
              "cosine) to the prediction",
    "mrr": "mean over held-out windows of 1 / (rank of the true next vector in the bank), rank 1 best",
    "contrastive_accuracy": "share of the other targets in a batch of {contrastive_batch} windows that "
                            "are farther (L2) from the prediction than its true target",
    "latency_within_threshold": "share of latency forecasts within {latency_threshold:.0%} of the true "
                                "latency (|p - y| <= {latency_threshold} |y|)",
    "success_accuracy": "accuracy of the forecast success rate as a healthy (>= {success_cut}) or "
                        "unhealthy agent, against the truth",
    "exact_match": "share of held-out pairs whose output equals the reference code exactly (every "
                   "character, layout included)",
    "token_accuracy": "mean over held-out pairs of the share of token positions (up to the longer of "
                      "output and reference) where the output's code token equals the reference's",
    "edit_similarity": "mean over held-out pairs of 1 - (character edit distance) / (length of the longer "
                       "of output and reference)",
    "parse_rate": "share of outputs that parse (bug_fix: the output; generation: the signature followed "
                  "by the body; completion: the line lexes), Python by ast, C by the lexer check",
    "unchanged_rate": "share of bug_fix outputs equal to their (buggy) source: no fix attempted",
    "loss": "mean negative log-likelihood of the held-out tokens, in nats per token (each token predicted "
            "from the tokens before it in its window)",
    "perplexity": "exp(loss): the effective number of equally likely next tokens",
    "bits_per_byte": "the held-out tokens' total negative log-likelihood in bits divided by the held-out "
                     "files' raw bytes: comparable across tokenizers (lower is better)",
    "compile_rate": "share of completions that pass gcc -fsyntax-only after their braces are balanced",
}
DEFAULT_PARAMETERS: dict[str, Any] = {
    "active_threshold": 0.01,
    "latency_threshold": 0.1,
    "success_cut": 0.95,
    "contrastive_batch": 256,
}


def define(key: str, parameters: Mapping[str, Any] | None = None) -> str:
    """The definition of metric ``key`` (KeyError names the metric when none is known)."""
    if key not in METRIC_DEFINITIONS:
        raise KeyError(f"no definition for the metric {key!r}; add it to seqlab.report.METRIC_DEFINITIONS")
    return METRIC_DEFINITIONS[key].format(**{**DEFAULT_PARAMETERS, **(parameters or {})})


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.4g}" if math.isfinite(v) else str(v)


@dataclass
class EvaluationSummary:
    """Held-out figures of a model beside its baselines, with sample count and definitions.

    Attributes:
        title: what was evaluated, e.g. ``"held-out poems, free-running decoding"``.
        rows: ``{row name: {metric: value}}``, the model's row(s) first, then the baselines',
            all on the same held-out samples.
        samples: the held-out sample count every figure is computed on.
        unit: what a sample is (``"chunks"``, ``"windows"``).
        keys: the metrics shown (default: every numeric metric of the first row).
        detail: more about the samples (``"4,154 tokens"``).
        notes: sentences shown before the table (e.g. which baseline the model loses to).
        parameters: values filled into the definitions (thresholds, batch sizes).
    """

    title: str
    rows: dict[str, dict[str, Any]]
    samples: int
    unit: str
    keys: list[str] | None = None
    detail: str = ""
    notes: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    def shown_keys(self) -> list[str]:
        if self.keys is not None:
            return list(self.keys)
        first = next(iter(self.rows.values()), {})
        return [k for k, v in first.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]

    def sample_line(self) -> str:
        """``"held out: 112 chunks (4,154 tokens); fewer than 200: ..."``."""
        line = f"held out: {self.samples:,} {self.unit}" + (f" ({self.detail})" if self.detail else "")
        if self.samples < SMALL_SAMPLE:
            line += (f"; fewer than {SMALL_SAMPLE}, so every figure here is a rough estimate (differences "
                     "of a few points may be noise)")
        return line

    def definitions(self) -> list[tuple[str, str]]:
        return [(k, define(k, self.parameters)) for k in self.shown_keys()]

    def table_rows(self) -> list[list[str]]:
        return [[name] + [_fmt(row.get(k, "")) for k in self.shown_keys()] + [f"{self.samples:,}"]
                for name, row in self.rows.items()]

    def markdown(self, heading: str = "## Evaluation") -> str:
        """The section of ``training_report.md``: sample count, notes, table, definitions."""
        keys = self.shown_keys()
        sample = self.sample_line()
        lines = [f"{heading} ({self.title})", "", sample[0].upper() + sample[1:] + ".", ""]
        lines += [*self.notes, ""] if self.notes else []
        lines += ["| | " + " | ".join(keys) + f" | held-out {self.unit} |",
                  "|---|" + "---|" * (len(keys) + 1)]
        lines += ["| " + " | ".join(r) + " |" for r in self.table_rows()]
        lines += ["", "Definitions:", ""] + [f"- `{k}`: {d}" for k, d in self.definitions()] + [""]
        return "\n".join(lines)

    def html(self, plot: str | Path | None = None, header: str = "") -> str:
        """A short HTML summary for Jupyter: the table, sample count, notes and the loss plot
        (the PNG inlined as base64) when ``plot`` exists."""
        keys = self.shown_keys()
        defs = dict(self.definitions())
        head = "".join(f'<th title="{html.escape(defs[k])}">{html.escape(k)}</th>' for k in keys)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                       for r in self.table_rows())
        parts = [f"<div><p><b>{html.escape(header)}</b></p>" if header else "<div>",
                 f"<p>{html.escape(self.title)}; {html.escape(self.sample_line())}</p>"]
        parts += [f"<p>{html.escape(n)}</p>" for n in self.notes]
        unit = html.escape(self.unit)
        parts.append(f"<table><tr><th></th>{head}<th>held-out {unit}</th></tr>{body}</table>")
        parts.append(plot_html(plot))
        parts.append("</div>")
        return "".join(parts)


def plot_html(plot: str | Path | None) -> str:
    """An ``<img>`` with the PNG at ``plot`` inlined (base64), or ``""`` when it does not exist."""
    if plot is None or not Path(plot).is_file():
        return ""
    data = base64.b64encode(Path(plot).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" style="max-width:100%"/>'


def recipe_html(description: str, summary: EvaluationSummary | None, run_dir: Path | None) -> str:
    """What a fitted recipe object shows in Jupyter: its one-line description, its evaluation
    summary (when it has one) and its training-loss plot."""
    plot = None if run_dir is None else Path(run_dir) / "training_metrics.png"
    if summary is not None:
        return summary.html(plot, header=description)
    return f"<div><p><b>{html.escape(description)}</b></p>{plot_html(plot)}</div>"


def append_to_report(run_dir: Path, summary: EvaluationSummary, extra: Sequence[str] = ()) -> None:
    """Appends the summary (and ``extra`` Markdown lines) to the run's ``training_report.md``."""
    from ..serialization import atomic_write_text

    report = Path(run_dir) / "training_report.md"
    if not report.exists():
        return
    text = report.read_text() + "\n" + summary.markdown() + "\n" + "\n".join(extra) + "\n"
    atomic_write_text(report, text)
