"""Decoding for the code language model: greedy, temperature, top-k and top-p sampling,
stop sequences, with the key/value cache (one fused C++ step per token,
:class:`~seqlab.models.code_lm.fused_decode.FusedDecoder`) or without it (the whole
sequence re-run each step: the reference the cached path is tested against)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ...autograd import no_grad
from .fused_decode import FusedDecoder
from .model import GPT, KVCache


def filter_logits(
    logits: np.ndarray, temperature: float, top_k: int | None, top_p: float | None
) -> np.ndarray:
    """Probabilities (N, V) from logits (N, V) after temperature, top-k and top-p (nucleus) cuts.

    top-k keeps the k largest logits; top-p keeps the smallest set of most probable
    tokens whose probability reaches p (always at least one).
    """
    z = logits.astype(np.float64) / temperature
    V = z.shape[-1]
    if top_k is not None and 0 < top_k < V:
        kth = np.partition(z, V - top_k, axis=-1)[:, V - top_k : V - top_k + 1]
        z = np.where(z < kth, -np.inf, z)
    z -= z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(p, order, axis=-1)
        before = np.cumsum(sorted_p, axis=-1) - sorted_p  # mass of the more probable tokens
        drop = np.zeros_like(p, dtype=bool)
        np.put_along_axis(drop, order, before >= top_p, axis=-1)
        p = np.where(drop, 0.0, p)
        p /= p.sum(axis=-1, keepdims=True)
    return p


def check_sampling(temperature: float, top_k: int | None, top_p: float | None, max_new_tokens: int) -> None:
    if not temperature >= 0:
        raise ValueError(f"temperature: expected a value >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k: expected a positive integer or None, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p: expected a probability in (0, 1] or None, got {top_p}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens: expected an integer >= 0, got {max_new_tokens!r}")


def check_prompt_length(n_prompt: int, max_len: int) -> None:
    if n_prompt > max_len:
        raise ValueError(
            f"prompt: {n_prompt} tokens exceed the model's maximum length of {max_len} tokens; "
            "shorten the prompt"
        )
    if n_prompt == 0:
        raise ValueError("prompt: empty (give at least one token of text)")


@no_grad()
def generate_ids(
    model: GPT,
    prompt: Sequence[int],
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    num_samples: int = 1,
    stop: Callable[[list[int]], bool] | None = None,
    end_id: int | None = 0,
    rng: np.random.Generator | None = None,
    use_cache: bool = True,
) -> list[list[int]]:
    """New token ids after ``prompt`` for ``num_samples`` rows decoded together.

    ``temperature`` 0 is greedy (argmax). A row ends at ``end_id`` (not included), when
    ``stop(row_ids)`` says so, after ``max_new_tokens``, or at the model's maximum length.
    ``use_cache``: one fused incremental step per token against the key/value cache (the
    prompt in one step too; default), or re-running the whole sequence each step (the reference).
    """
    check_sampling(temperature, top_k, top_p, max_new_tokens)
    ids = np.asarray(prompt, dtype=np.int64).reshape(-1)
    max_len = model.config.max_len
    check_prompt_length(len(ids), max_len)
    rng = rng or np.random.default_rng()
    was_training = model.training
    model.eval()
    try:
        seq = np.tile(ids, (num_samples, 1))
        decoder = FusedDecoder(model, KVCache(model.config, num_samples)) if use_cache else None
        last = decoder.step(seq) if decoder is not None else model(seq).data[:, -1, :]  # (N, V)
        out: list[list[int]] = [[] for _ in range(num_samples)]
        alive = np.ones(num_samples, dtype=bool)
        steps = min(max_new_tokens, max_len - len(ids) + 1)
        for step in range(steps):
            if temperature == 0:
                nxt = np.argmax(last, axis=-1)
            else:
                p = filter_logits(last, temperature, top_k, top_p)
                cum = np.cumsum(p, axis=-1)
                u = rng.random((num_samples, 1)) * cum[:, -1:]
                nxt = np.minimum((cum < u).sum(axis=-1), p.shape[-1] - 1)
            for r in np.flatnonzero(alive):
                t = int(nxt[r])
                if end_id is not None and t == end_id:
                    alive[r] = False
                    continue
                out[r].append(t)
                if stop is not None and stop(out[r]):
                    alive[r] = False
            if not alive.any() or step == steps - 1 or seq.shape[1] >= max_len:
                break
            seq = np.concatenate([seq, nxt[:, None].astype(np.int64)], axis=1)
            last = decoder.step(seq[:, -1:]) if decoder is not None else model(seq).data[:, -1, :]
        return out
    finally:
        model.train(was_training)
