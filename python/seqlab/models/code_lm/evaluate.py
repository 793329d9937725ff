"""Held-out scores of the code LM: loss, perplexity and bits per byte beside the n-gram
baseline, and the compile rate beside n-gram samples and the true held-out functions."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ... import functional as F
from ...autograd import no_grad
from .compile_check import (
    CompilePrompt,
    closes_function,
    compiles,
    finish_completion,
    fixed_prompts,
    held_out_functions,
    void_name_prefix,
)
from .model import GPT
from .ngram import KneserNeyNgram


@no_grad()
def stream_nats(model: GPT, stream: np.ndarray, seq_len: int, batch_size: int = 16) -> tuple[float, int]:
    """Total negative log-likelihood (nats) of every token of ``stream`` after the first, and
    the count. Windows of ``seq_len`` tokens overlap by half: each token after the first
    window is scored with at least ``seq_len / 2`` tokens of context."""
    n = len(stream) - 1
    if n < 1:
        return 0.0, 0
    stride = max(1, seq_len // 2)
    starts = list(range(0, max(n - seq_len, 0) + 1, stride))
    if starts[-1] + seq_len < n:
        starts.append(n - seq_len if n > seq_len else 0)
    was_training = model.training
    model.eval()
    total, count, scored_to = 0.0, 0, 0
    try:
        length = min(seq_len, n)
        for b in range(0, len(starts), batch_size):
            group = starts[b : b + batch_size]
            x = np.stack([stream[a : a + length] for a in group])
            y = np.stack([stream[a + 1 : a + length + 1] for a in group])
            nll = F.cross_entropy(model(x), y, reduction="none").data
            for row, a in enumerate(group):
                first = max(scored_to - a, 0)  # targets before scored_to were scored by an earlier window
                total += float(nll[row, first:].sum(dtype=np.float64))
                count += length - first
                scored_to = a + length
    finally:
        model.train(was_training)
    return total, count


def language_scores(
    model: GPT, ngram: KneserNeyNgram, stream: np.ndarray, n_bytes: int, seq_len: int
) -> dict[str, Any]:
    """Loss (nats per token), perplexity and bits per byte of the model and the n-gram."""
    nats, count = stream_nats(model, stream, seq_len)
    # the n-gram scores stream[1:] with contexts from the start of the stream, like the model
    ng_bits = float(-ngram.log_probs(stream)[1:].sum() / math.log(2)) if len(stream) > 1 else 0.0
    loss = nats / max(count, 1)
    return {
        "tokens": count,
        "bytes": n_bytes,
        "model": {
            "loss": loss,
            "perplexity": math.exp(min(loss, 700)),
            "bits_per_byte": nats / math.log(2) / n_bytes,
        },
        "ngram": {
            "order": ngram.order,
            "loss": ng_bits * math.log(2) / max(count, 1),
            "perplexity": math.exp(min(ng_bits * math.log(2) / max(count, 1), 700)),
            "bits_per_byte": ng_bits / n_bytes,
        },
    }


def compile_prompts(
    train_texts: list[str], held_out: list[tuple[str, str]], per_family: int, root: str | None
) -> list[CompilePrompt]:
    """The fixed prompts and up to ``per_family`` held-out function prompts."""
    return fixed_prompts(void_name_prefix(train_texts)) + held_out_functions(held_out, per_family, root)


def compile_rate(
    prompts: list[CompilePrompt],
    samples: int,
    complete_model: Callable[[str, int], list[str]],
    complete_ngram: Callable[[str, int], list[str]],
) -> dict[str, Any]:
    """Share of snippets passing ``gcc -fsyntax-only`` per prompt family and overall, for the
    model's completions, the n-gram's and (held-out functions) the true functions.

    ``complete_*(prompt_text, n)`` returns n completions. Fixed prompts get ``samples``
    completions each; each held-out function prompt gets one (there are up to
    ``samples`` of them).
    """
    rows: dict[str, dict[str, list[bool]]] = {}
    examples: dict[str, str] = {}
    for p in prompts:
        n = samples if p.reference is None else 1
        row = rows.setdefault(p.family, {"model": [], "ngram": [], "true": []})
        for name, complete in (("model", complete_model), ("ngram", complete_ngram)):
            for text in complete(p.text, n):
                snippet = finish_completion(p.text, text)
                row[name].append(compiles(p, snippet))
                examples.setdefault(f"{name}: {p.family}", snippet)
        if p.reference is not None:
            row["true"].append(compiles(p, p.reference))

    def share(flags: list[bool]) -> float | None:
        return sum(flags) / len(flags) if flags else None

    out: dict[str, Any] = {"families": {}, "examples": examples}
    for fam, row in rows.items():
        out["families"][fam] = {k: {"pass": share(v), "n": len(v)} for k, v in row.items() if v}
    for k in ("model", "ngram", "true"):
        flags = [f for row in rows.values() for f in row[k]]
        out[k] = {"pass": share(flags), "n": len(flags)}
    return out


def stop_at_function_end(decode: Callable[[list[int]], str], prompt: str) -> Callable[[list[int]], bool]:
    """A stop rule for completions: the prompt's first function is closed."""

    def stop(ids: list[int]) -> bool:
        return closes_function(prompt + decode(ids))

    return stop
