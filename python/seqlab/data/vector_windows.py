"""Windows of vector chains and their next vector, for training and evaluation.

A *window* is up to ``context`` consecutive vectors of one chain and the vector that
follows them. Two ways to get them:

* :class:`SegmentBatches` (training): a chain is cut into segments of ``context``
  consecutive windows at a random offset each epoch. A causal model run over a segment
  yields every window's prediction in one pass (the i-th output has seen the segment's
  first i + 1 vectors), so a segment of S windows costs S steps, not S * context.
* :func:`window_spans` + :func:`padded_windows` (evaluation and inference): every
  target with exactly the ``min(t, context)`` vectors before it, each run on its own.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .vector_chains import VectorChains


@dataclass
class SegmentBatch:
    """A micro-batch of chain segments.

    Attributes:
        inputs: ``(B, S, D)`` float32, zero-padded after each segment's length.
        lengths: ``(B,)`` int64 vectors per segment.
        positions: ``(M,)`` flat indices into ``B * S`` of the outputs that predict a
            next vector (every real position: ``M = lengths.sum()``).
        targets: ``(M,)`` int64 rows of the chains' ``vectors`` that follow each position.
        segments: ``(M,)`` int64 index of each target's segment within the batch.
    """

    inputs: np.ndarray
    lengths: np.ndarray
    positions: np.ndarray
    targets: np.ndarray
    segments: np.ndarray

    def __len__(self) -> int:  # the Trainer weighs micro-batches by this: windows
        return len(self.targets)


def _check_context(context: int) -> int:
    if not isinstance(context, (int, np.integer)) or isinstance(context, bool) or context < 1:
        raise ValueError(f"context: expected a positive integer, got {context!r}")
    return int(context)


class SegmentBatches:
    """Batch source over chain segments (see the module docstring).

    Args:
        chains: the split's chains (vectors L2-normalised by the caller).
        context: windows per segment (the longest context seen in training).
        segments_per_batch: segments per micro-batch.
        shuffle: draw new segment offsets and order from the generator each epoch;
            otherwise segments start at each chain's first vector, in chain order.
    """

    def __init__(self, chains: VectorChains, context: int, segments_per_batch: int = 4,
                 shuffle: bool = True) -> None:
        self.chains = chains
        self.context = _check_context(context)
        if segments_per_batch < 1:
            raise ValueError(f"segments_per_batch: expected >= 1, got {segments_per_batch}")
        self.segments_per_batch = int(segments_per_batch)
        self.shuffle = shuffle
        windows = np.maximum(chains.lengths - 1, 0)
        if windows.sum() == 0:
            raise ValueError(f"{chains.source}: no chain has two vectors, so there is no window")
        self._windows = windows
        #: the chains this source cuts segments from, in order (see subset)
        self._chain_ids = np.arange(len(windows))
        self._unshuffled = self._segments(None)

    @property
    def subset_size(self) -> int:
        """Chains (the items :meth:`subset` selects)."""
        return len(self._chain_ids)

    def subset(self, indices: np.ndarray) -> SegmentBatches:
        """A source over the chains ``indices`` only; targets stay row indices into
        ``chains.vectors``. It may hold no window (then no batch)."""
        sub = copy.copy(self)
        sub._chain_ids = self._chain_ids[np.asarray(indices, dtype=np.int64)]
        sub._unshuffled = sub._segments(None)
        return sub

    @property
    def num_samples(self) -> int:
        """Windows per epoch."""
        return int(self._windows[self._chain_ids].sum())

    def _segments(self, rng: np.random.Generator | None) -> list[tuple[int, int]]:
        """(first input row, windows) of every segment of the epoch."""
        out = []
        for i in self._chain_ids:
            n = int(self._windows[i])
            if n == 0:
                continue
            start = int(self.chains.offsets[i])
            first = int(rng.integers(0, self.context)) % n if (self.shuffle and rng is not None) else 0
            cuts = [0, *range(first, n, self.context)] if first else list(range(0, n, self.context))
            cuts.append(int(n))
            out += [(start + a, b - a) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
        return out

    def num_batches(self) -> int:
        return -(-len(self._unshuffled) // self.segments_per_batch)

    def mean_segment_windows(self) -> float:
        return float(np.mean([n for _, n in self._unshuffled]))

    def batches(self, rng: np.random.Generator | None = None) -> Iterator[SegmentBatch]:
        segs = self._segments(rng) if (self.shuffle and rng is not None) else self._unshuffled
        if self.shuffle and rng is not None:
            segs = [segs[i] for i in rng.permutation(len(segs))]
        vectors = self.chains.vectors
        for b in range(0, len(segs), self.segments_per_batch):
            group = segs[b : b + self.segments_per_batch]
            width = max(n for _, n in group)
            inputs = np.zeros((len(group), width, vectors.shape[1]), dtype=np.float32)
            lengths = np.array([n for _, n in group], dtype=np.int64)
            positions, targets = [], []
            for j, (row, n) in enumerate(group):
                inputs[j, :n] = vectors[row : row + n]
                positions.append(j * width + np.arange(n))
                targets.append(np.arange(row + 1, row + n + 1))
            yield SegmentBatch(inputs, lengths, np.concatenate(positions), np.concatenate(targets),
                               np.repeat(np.arange(len(group)), lengths))


def window_spans(chains: VectorChains, context: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window of the chains: ``(starts, targets)`` row indices into ``chains.vectors``.

    Window q holds rows ``starts[q] .. targets[q] - 1`` (at most ``context`` of them, all of
    the target's chain) and predicts row ``targets[q]``.
    """
    context = _check_context(context)
    starts, targets = [], []
    for a, b in zip(chains.offsets[:-1], chains.offsets[1:]):
        t = np.arange(a + 1, b)
        targets.append(t)
        starts.append(np.maximum(t - context, a))
    if not targets:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(starts).astype(np.int64), np.concatenate(targets).astype(np.int64)


def padded_windows(
    vectors: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(B, T, D)`` right-padded windows ``vectors[starts[i]:ends[i]]`` and their lengths."""
    lengths = (ends - starts).astype(np.int64)
    width = int(lengths.max())
    offsets = np.arange(width)
    rows = np.minimum(starts[:, None] + offsets[None, :], np.maximum(ends - 1, 0)[:, None])
    out = vectors[rows]
    out[offsets[None, :] >= lengths[:, None]] = 0.0
    return out, lengths
