"""The baseline: an interpolated Kneser-Ney n-gram model over the same tokens.

Order n, absolute discount ``D_k = n1 / (n1 + 2 n2)`` per order (n1, n2: how many
k-grams occur once, twice), the highest order on raw counts, the lower ones on
continuation counts (how many distinct tokens precede a k-gram), the unigram
interpolated with the uniform distribution (Chen & Goodman, 1998):

    P_k(w | h) = (max(c_k(h w) - D_k, 0) + D_k N1+(h .) P_{k-1}(w | h')) / c_k(h)
    P_k(w | h) = P_{k-1}(w | h')   when c_k(h) = 0;      P_0(w) = 1 / V

k-grams are packed into int64 keys (base V), counted with ``np.unique`` and looked up
with ``np.searchsorted``, so scoring a held-out stream is vectorised.
"""

from __future__ import annotations

import math

import numpy as np


class _Order:
    """Counts of one order: sorted k-gram keys with counts, and per context their total
    and number of distinct continuations."""

    def __init__(self, keys: np.ndarray, counts: np.ndarray, vocab: int) -> None:
        self.keys, self.counts = keys, counts.astype(np.float64)
        ctx = keys // vocab
        self.ctx_keys, first = np.unique(ctx, return_index=True)
        self.ctx_total = np.add.reduceat(self.counts, first) if len(first) else np.zeros(0)
        self.ctx_types = np.diff(np.append(first, len(keys))).astype(np.float64)
        n1 = float(np.sum(counts == 1))
        n2 = float(np.sum(counts == 2))
        self.discount = n1 / (n1 + 2 * n2) if n1 > 0 else 0.5

    @staticmethod
    def _lookup(sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
        i = np.searchsorted(sorted_keys, query)
        i = np.minimum(i, max(len(sorted_keys) - 1, 0))
        found = (sorted_keys[i] == query) if len(sorted_keys) else np.zeros(query.shape, bool)
        return np.where(found, values[i] if len(values) else 0.0, 0.0)

    def count(self, keys: np.ndarray) -> np.ndarray:
        return self._lookup(self.keys, self.counts, keys)

    def context(self, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._lookup(self.ctx_keys, self.ctx_total, ctx), self._lookup(
            self.ctx_keys, self.ctx_types, ctx
        )


class KneserNeyNgram:
    """Interpolated Kneser-Ney n-gram model over token ids in [0, vocab_size).

    Args:
        order: n (the largest k-gram), 1 to 6, with ``vocab_size ** order < 2 ** 62``.
        vocab_size: V.
    """

    def __init__(self, order: int, vocab_size: int) -> None:
        if order < 1 or order > 6 or vocab_size**order >= 2**62:
            raise ValueError(
                f"order: {order}-grams over {vocab_size} tokens do not fit int64 keys (choose a lower order)"
            )
        self.order, self.vocab = int(order), int(vocab_size)
        self.orders: list[_Order] = []

    def _grams(self, ids: np.ndarray, k: int) -> np.ndarray:
        """Keys of every k-gram of ``ids`` (positions k-1 .. end)."""
        key = np.zeros(len(ids) - k + 1, dtype=np.int64)
        for j in range(k):
            key = key * self.vocab + ids[j : len(ids) - k + 1 + j]
        return key

    def fit(self, ids: np.ndarray) -> KneserNeyNgram:
        """Counts the k-grams of one token stream (files joined by the end-of-file token)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) < self.order:
            raise ValueError(f"fit: {len(ids)} tokens are fewer than the order {self.order}")
        keys, counts = np.unique(self._grams(ids, self.order), return_counts=True)
        levels = [(keys, counts)]
        for k in range(self.order - 1, 0, -1):  # continuation counts: distinct left extensions
            higher = levels[-1][0]
            suffix = higher % (self.vocab**k)
            keys, counts = np.unique(suffix, return_counts=True)
            levels.append((keys, counts))
        self.orders = [_Order(k, c, self.vocab) for k, c in reversed(levels)]  # orders[k-1] is order k
        return self

    def _prob(self, ctx_tokens: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
        """P_k(w | the last k-1 tokens of each row of ctx_tokens (N, >= k-1))."""
        if k == 0:
            return np.full(len(w), 1.0 / self.vocab)
        lower = self._prob(ctx_tokens, w, k - 1)
        o = self.orders[k - 1]
        ctx = np.zeros(len(w), dtype=np.int64)
        for j in range(k - 1):
            ctx = ctx * self.vocab + ctx_tokens[:, ctx_tokens.shape[1] - (k - 1) + j]
        total, types = o.context(ctx)
        c = o.count(ctx * self.vocab + w)
        seen = total > 0
        safe = np.where(seen, total, 1.0)
        p = (np.maximum(c - o.discount, 0.0) + o.discount * types * lower) / safe
        return np.where(seen, p, lower)

    def log_probs(self, ids: np.ndarray) -> np.ndarray:
        """Natural log-probability of each token of a stream given the tokens before it
        (the first tokens use the shorter contexts they have, padded by end-of-file ids 0)."""
        ids = np.asarray(ids, dtype=np.int64)
        pad = np.concatenate([np.zeros(self.order - 1, dtype=np.int64), ids])
        ctx = (
            np.stack([pad[j : j + len(ids)] for j in range(self.order - 1)], axis=1)
            if self.order > 1
            else np.zeros((len(ids), 0), dtype=np.int64)
        )
        return np.log(self._prob(ctx, ids, self.order))

    def bits(self, ids: np.ndarray) -> float:
        """Total bits of a held-out stream."""
        return float(-self.log_probs(ids).sum() / math.log(2))

    def distribution(self, context: np.ndarray) -> np.ndarray:
        """P(. | context) over the whole vocabulary (V,), for sampling."""
        ctx = (
            np.asarray(context, dtype=np.int64)[-(self.order - 1) :]
            if self.order > 1
            else np.zeros(0, np.int64)
        )
        if len(ctx) < self.order - 1:
            ctx = np.concatenate([np.zeros(self.order - 1 - len(ctx), dtype=np.int64), ctx])
        w = np.arange(self.vocab, dtype=np.int64)
        p = self._prob(np.broadcast_to(ctx, (self.vocab, len(ctx))), w, self.order)
        return p / p.sum()

    def sample(
        self,
        context: list[int],
        max_new_tokens: int,
        rng: np.random.Generator,
        end_id: int = 0,
        stop: object = None,
    ) -> list[int]:
        """Tokens drawn one by one after ``context`` until ``end_id``, ``stop(ids)`` or the limit."""
        out: list[int] = []
        seq = list(context)
        for _ in range(max_new_tokens):
            t = int(rng.choice(self.vocab, p=self.distribution(np.asarray(seq))))
            if t == end_id:
                break
            out.append(t)
            seq.append(t)
            if callable(stop) and stop(out):
                break
        return out
