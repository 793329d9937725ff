"""Vocabulary: token <-> id maps with a minimum count."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

PAD, UNK = "<pad>", "<unk>"


class Vocabulary:
    """Maps tokens to int64 ids; id 0 is padding and id 1 the unknown token.

    Build with :meth:`build` from tokenised texts; tokens seen fewer than
    ``min_count`` times map to ``<unk>``. Ids are assigned by decreasing count,
    ties alphabetically, so the same corpus always gives the same ids.
    """

    def __init__(self, tokens: Sequence[str], counts: Sequence[int] | None = None) -> None:
        if list(tokens[:2]) != [PAD, UNK]:
            raise ValueError(f"Vocabulary: the first two tokens must be {PAD!r} and {UNK!r}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("Vocabulary: tokens must be unique")
        self.itos: list[str] = list(tokens)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        self.counts: list[int] = list(counts) if counts is not None else [0] * len(self.itos)

    @classmethod
    def build(
        cls,
        texts: Iterable[Sequence[str]],
        min_count: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = (),
    ) -> Vocabulary:
        """The vocabulary of tokenised texts (tokens with at least ``min_count`` occurrences).

        ``specials`` (such as ``<s>``, ``</s>``) take the ids right after ``<pad>`` and
        ``<unk>``, with count 0, and count towards ``max_size``."""
        if min_count < 1:
            raise ValueError(f"Vocabulary.build: min_count must be >= 1, got {min_count}")
        counter: Counter[str] = Counter()
        for tokens in texts:
            counter.update(tokens)
        for t in (PAD, UNK, *specials):
            counter.pop(t, None)
        kept = sorted(((t, n) for t, n in counter.items() if n >= min_count), key=lambda x: (-x[1], x[0]))
        if max_size is not None:
            kept = kept[: max(0, max_size - 2 - len(specials))]
        if not kept:
            raise ValueError(
                f"Vocabulary.build: no token occurs at least {min_count} times "
                f"({len(counter)} distinct tokens in the texts)"
            )
        unk = sum(n for t, n in counter.items() if n < min_count)
        tokens = [PAD, UNK, *specials, *(t for t, _ in kept)]
        return cls(tokens, [0, unk, *(0 for _ in specials), *(n for _, n in kept)])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """Ids of ``tokens``, shape ``(len(tokens),)`` int64 (unknown tokens -> 1)."""
        return np.fromiter((self.stoi.get(t, 1) for t in tokens), dtype=np.int64, count=len(tokens))

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids``; padding ids are dropped."""
        return [self.itos[int(i)] for i in ids if int(i) != 0]

    def to_dict(self) -> dict[str, list]:
        return {"tokens": self.itos, "counts": self.counts}

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> Vocabulary:
        return cls(d["tokens"], d.get("counts"))
