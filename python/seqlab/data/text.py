"""Word tokenisation and chunking of token sequences."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Words (letters/digits, with inner apostrophes or hyphens: "don't", "well-known")
# and single punctuation marks.
_TOKEN = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lowercased words and punctuation marks, in order.

    >>> tokenize("Shall I compare thee to a summer's day?")
    ['shall', 'i', 'compare', 'thee', 'to', 'a', "summer's", 'day', '?']
    """
    return [t.replace("’", "'") for t in _TOKEN.findall(text.lower())]


@dataclass(frozen=True)
class ChunkReport:
    """How much of a corpus the chunks keep."""

    sequences: int
    chunks: int
    tokens: int
    kept_tokens: int

    @property
    def kept_share(self) -> float:
        return self.kept_tokens / self.tokens if self.tokens else 0.0

    def __str__(self) -> str:
        return (
            f"{self.chunks} chunks of at most the maximum length from {self.sequences} sequences, "
            f"keeping {self.kept_tokens}/{self.tokens} tokens ({100 * self.kept_share:.1f}%)"
        )


def chunk(
    tokens: Sequence[str], max_len: int, stride: int | None = None, min_len: int = 1
) -> list[list[str]]:
    """Splits a token sequence into windows of at most ``max_len`` tokens.

    Windows start every ``stride`` tokens (default ``max_len``: no overlap); a final
    window shorter than ``min_len`` is dropped unless it is the only one.
    """
    if max_len < 1:
        raise ValueError(f"chunk: max_len must be >= 1, got {max_len}")
    stride = max_len if stride is None else stride
    if not 1 <= stride <= max_len:
        raise ValueError(f"chunk: stride must be in [1, max_len={max_len}], got {stride}")
    if len(tokens) <= max_len:
        return [list(tokens)] if tokens else []
    out = []
    for start in range(0, len(tokens), stride):
        window = list(tokens[start : start + max_len])
        if len(window) < min_len:
            break
        out.append(window)
        if start + max_len >= len(tokens):
            break
    return out


def chunk_all(
    sequences: Sequence[Sequence[str]], max_len: int, stride: int | None = None, min_len: int = 1
) -> tuple[list[list[str]], list[int], ChunkReport]:
    """Chunks every sequence; returns (chunks, index of each chunk's sequence, report)."""
    chunks: list[list[str]] = []
    owners: list[int] = []
    total = 0
    covered = 0
    for i, seq in enumerate(sequences):
        total += len(seq)
        parts = chunk(seq, max_len, stride, min_len)
        chunks.extend(parts)
        owners.extend([i] * len(parts))
        if parts:
            step = max_len if stride is None else stride
            covered += min(len(seq), (len(parts) - 1) * step + len(parts[-1]))
    report = ChunkReport(sequences=len(sequences), chunks=len(chunks), tokens=total, kept_tokens=covered)
    return chunks, owners, report
