"""Held-out scores of the code LM: loss, perplexity and bits per byte beside the n-gram
baseline, and the compile rate beside n-gram samples and the true held-out functions."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ... import functional as F
from ...autograd import no_grad
from ...data.source_files import SourceCorpus, read_source_files
from .compile_check import (
    CompilePrompt,
    HeldOutFunctions,
    choose_held_out_functions,
    closes_function,
    compiles,
    finish_completion,
    fixed_prompts,
    void_name_prefix,
)
from .config import CodeLMConfig
from .model import GPT
from .ngram import KneserNeyNgram

if TYPE_CHECKING:
    from .dataset import CodeData

# a capped corpus (the default one) reads up to this many times its cap to find unread
# files with functions when its held-out splits hold too few
UNREAD_READ_FACTOR = 10
# fewer held-out items than this make a share a rough figure, and the result says so
FEW_ITEMS = 200


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


@dataclass
class CompilePrompts:
    """The prompts of a compile-rate check and how the held-out functions were chosen."""

    prompts: list[CompilePrompt]
    held_out: HeldOutFunctions = field(default_factory=HeldOutFunctions)


def unread_files(corpus: SourceCorpus, config: CodeLMConfig) -> Iterator[tuple[str, str, str]]:
    """Files of a capped corpus' tree that it did not read (so no split holds them and the
    tokenizer and model never saw them), in a seeded random order, without copies of read
    ones; nothing when the corpus was not capped or spans several roots."""
    if ":" in corpus.root or not corpus.skipped.get("over_total_cap"):
        return
    seen = {f.path for f in corpus.files} | {hashlib.sha256(f.data).hexdigest() for f in corpus.files}
    more = read_source_files(corpus.root, config.extensions, config.max_file_bytes,
                             UNREAD_READ_FACTOR * config.max_total_bytes, seed=config.seed).files
    fresh = [f for f in more if f.path not in seen and hashlib.sha256(f.data).hexdigest() not in seen]
    for i in np.random.default_rng(config.seed + 1).permutation(len(fresh)):
        yield "unread (over the corpus cap)", fresh[i].path, fresh[i].data.decode("utf-8", "replace")


def held_out_files(data: CodeData, split: str, config: CodeLMConfig) -> Iterator[tuple[str, str, str]]:
    """(source, path, text) of the files no model saw: the ``split`` files, the other
    held-out split's, then :func:`unread_files`."""
    for name in (split, *(s for s in ("test", "val") if s != split)):
        if name == "train":
            continue
        for f in data.splits[name]:
            yield name, f.path, f.data.decode("utf-8", "replace")
    yield from unread_files(data.corpus, config)


def compile_prompts(data: CodeData, split: str, config: CodeLMConfig) -> CompilePrompts:
    """The fixed prompts and up to ``config.compile_functions`` held-out function prompts
    (:func:`held_out_files`, each in its file's context)."""
    train_texts = [f.data.decode("utf-8", "replace") for f in data.splits["train"]]
    root = None if ":" in data.corpus.root else data.corpus.root
    held = choose_held_out_functions(held_out_files(data, split, config), config.compile_functions, root)
    return CompilePrompts(fixed_prompts(void_name_prefix(train_texts)) + held.prompts, held)


def compile_rate(
    prompts: Sequence[CompilePrompt] | CompilePrompts,
    samples: int,
    complete_model: Callable[[str, int], list[str]],
    complete_ngram: Callable[[str, int], list[str]],
) -> dict[str, Any]:
    """Share of snippets passing ``gcc -fsyntax-only`` per prompt family and overall, for the
    model's completions, the n-gram's and (held-out functions) the true functions.

    ``complete_*(prompt_text, n)`` returns n completions. Fixed prompts get ``samples``
    completions each; each held-out function prompt gets one. With :class:`CompilePrompts`
    the result's ``held_out`` says how the functions were chosen (files read, excluded,
    sources, contexts), and ``note`` flags shares over fewer than :data:`FEW_ITEMS` items.
    """
    held_out = prompts.held_out if isinstance(prompts, CompilePrompts) else None
    if isinstance(prompts, CompilePrompts):
        prompts = prompts.prompts
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
    if held_out is not None:
        out["held_out"] = held_out.summary()
    few = [k for k in ("model", "ngram", "true") if 0 < out[k]["n"] < FEW_ITEMS]
    if few:
        counts = ", ".join(f"{k} {out[k]['n']}" for k in few)
        out["note"] = (f"{counts} snippets: fewer than {FEW_ITEMS}, so a share is rough "
                       "(one snippet moves it by more than 0.5 points)")
    return out


def stop_at_function_end(decode: Callable[[list[int]], str], prompt: str) -> Callable[[list[int]], bool]:
    """A stop rule for completions: the prompt's first function is closed."""

    def stop(ids: list[int]) -> bool:
        return closes_function(prompt + decode(ids))

    return stop
