"""Batching: seeded shuffling, padding with lengths, bucketing by length, negatives.

Two batch sources share one small protocol used by :class:`seqlab.train.Trainer`:
``num_samples``, ``num_batches()`` and ``batches(rng)``, an iterator whose order
depends only on the generator passed in (so a seeded run is reproducible and a
resumed run replays the same order).

* :class:`ArrayBatches` slices arrays that share their first dimension.
* :class:`SequenceBatches` pads variable-length sequences into ``(B, T, C)`` (or
  ``(B, T)`` for token ids) with a ``lengths`` vector, grouping sequences of similar
  length so that padding stays small.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class BatchSource(Protocol):
    """What the Trainer iterates over."""

    @property
    def num_samples(self) -> int: ...

    def num_batches(self) -> int: ...

    def batches(self, rng: np.random.Generator | None) -> Iterator[Any]: ...


@runtime_checkable
class ShardableSource(Protocol):
    """A batch source that data-parallel training can split between ranks: ``subset_size``
    items (samples, or whole chains for chain sources), of which ``subset(indices)`` keeps
    the given ones, in that order, as a source of the same kind."""

    @property
    def subset_size(self) -> int: ...

    def subset(self, indices: np.ndarray) -> BatchSource: ...


def _check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


class ArrayBatches:
    """Batches of aligned arrays: ``(x[i:j], y[i:j], ...)``.

    Args:
        arrays: one array or a tuple of arrays with the same length N (first dimension).
        batch_size: samples per batch; the last batch may be smaller unless ``drop_last``.
        shuffle: draw a new permutation from the generator each epoch.
    """

    def __init__(
        self,
        arrays: np.ndarray | Sequence[np.ndarray],
        batch_size: int = 32,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> None:
        single = isinstance(arrays, np.ndarray)
        arrs = [np.asarray(a) for a in ([arrays] if single else arrays)]
        if not arrs:
            raise ValueError("ArrayBatches: no arrays given")
        n = len(arrs[0])
        for i, a in enumerate(arrs):
            if a.ndim == 0:
                raise ValueError(f"ArrayBatches: array {i} is a scalar, expected a first dimension")
            if len(a) != n:
                raise ValueError(
                    f"ArrayBatches: array {i} has {len(a)} samples, array 0 has {n}: "
                    f"shapes {[x.shape for x in arrs]}"
                )
        if n == 0:
            raise ValueError("ArrayBatches: the arrays are empty (0 samples)")
        self.arrays = arrs
        self.single = single
        self.batch_size = _check_batch_size(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last

    @property
    def num_samples(self) -> int:
        return len(self.arrays[0])

    def num_batches(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    @property
    def subset_size(self) -> int:
        return self.num_samples

    def subset(self, indices: np.ndarray) -> ArrayBatches:
        """The samples ``indices`` (non-empty), batched in that order (no further shuffling)."""
        idx = np.asarray(indices, dtype=np.int64)
        parts = [a[idx] for a in self.arrays]
        return ArrayBatches(parts[0] if self.single else parts, self.batch_size, False, self.drop_last)

    def batches(self, rng: np.random.Generator | None = None) -> Iterator[Any]:
        n = self.num_samples
        order = rng.permutation(n) if (self.shuffle and rng is not None) else np.arange(n)
        for k in range(self.num_batches()):
            idx = order[k * self.batch_size : (k + 1) * self.batch_size]
            if self.shuffle:
                parts = tuple(a[idx] for a in self.arrays)
            else:
                parts = tuple(a[k * self.batch_size : (k + 1) * self.batch_size] for a in self.arrays)
            yield parts[0] if self.single else parts


@dataclass
class PaddedBatch:
    """A batch of padded sequences.

    Attributes:
        inputs: ``(B, T_max, C)`` float32 or ``(B, T_max)`` int64, zero-padded.
        lengths: ``(B,)`` int64 real lengths.
        indices: ``(B,)`` positions of the sequences in the source list.
        targets: per-sample targets stacked (or padded like inputs), or None.
        negatives: ``(B, K, ...)`` samples drawn from outside the batch, or None.
    """

    inputs: np.ndarray
    lengths: np.ndarray
    indices: np.ndarray
    targets: np.ndarray | None = None
    negatives: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.lengths)


def pad_sequences(
    seqs: Sequence[np.ndarray], max_len: int | None = None, pad_value: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Pads sequences of shape ``(T_i, ...)`` into ``(B, T_max, ...)``; returns (padded, lengths).

    Sequences longer than ``max_len`` are truncated to it.
    """
    if len(seqs) == 0:
        raise ValueError("pad_sequences: no sequences given")
    arrs = [np.asarray(s) for s in seqs]
    tail = arrs[0].shape[1:]
    for i, s in enumerate(arrs):
        if s.ndim == 0 or s.shape[1:] != tail:
            raise ValueError(
                f"pad_sequences: sequence {i} has shape {s.shape}, expected (T, {', '.join(map(str, tail))})"
                if tail
                else f"pad_sequences: sequence {i} has shape {s.shape}, expected (T,)"
            )
    lengths = np.array([len(s) for s in arrs], dtype=np.int64)
    if max_len is not None:
        lengths = np.minimum(lengths, max_len)
    if (lengths == 0).any():
        raise ValueError(f"pad_sequences: sequence {int(np.argmin(lengths))} is empty")
    t_max = int(lengths.max())
    out = np.full((len(arrs), t_max, *tail), pad_value, dtype=arrs[0].dtype)
    for i, (s, n) in enumerate(zip(arrs, lengths)):
        out[i, :n] = s[:n]
    return out, lengths


class SequenceBatches:
    """Padded batches of variable-length sequences, bucketed by length.

    Args:
        sequences: N arrays of shape ``(T_i, C)`` (vectors) or ``(T_i,)`` (token ids).
        targets: optional per-sample targets: an array with first dimension N, or N
            arrays of shape ``(T_i, ...)`` padded like the inputs.
        batch_size: sequences per batch.
        shuffle: shuffle with the epoch's generator.
        bucket_size: sort sequences by length within pools of ``bucket_size`` batches,
            so a batch holds sequences of similar length (1 disables bucketing).
        max_len: truncate sequences to this many steps (a curriculum may change it
            between epochs through the attribute of the same name).
        negatives: draw this many samples from outside each batch as ``negatives``
            (for contrastive losses); they come from ``targets`` when given, else inputs.
    """

    def __init__(
        self,
        sequences: Sequence[np.ndarray],
        targets: Any = None,
        batch_size: int = 32,
        shuffle: bool = True,
        bucket_size: int = 8,
        max_len: int | None = None,
        negatives: int = 0,
    ) -> None:
        if len(sequences) == 0:
            raise ValueError("SequenceBatches: no sequences given")
        self.sequences = [np.asarray(s) for s in sequences]
        for i, s in enumerate(self.sequences):
            if s.ndim == 0 or len(s) == 0:
                raise ValueError(f"SequenceBatches: sequence {i} is empty (shape {s.shape})")
        if targets is not None and len(targets) != len(self.sequences):
            raise ValueError(f"SequenceBatches: {len(targets)} targets for {len(self.sequences)} sequences")
        self.targets = targets
        self.batch_size = _check_batch_size(batch_size)
        self.shuffle = shuffle
        if bucket_size < 1:
            raise ValueError(f"SequenceBatches: bucket_size must be >= 1, got {bucket_size}")
        self.bucket_size = int(bucket_size)
        self.max_len = max_len
        if negatives < 0 or (negatives and negatives > len(self.sequences) - self.batch_size):
            raise ValueError(
                f"SequenceBatches: negatives={negatives} needs at least batch_size + negatives "
                f"= {self.batch_size + negatives} samples, have {len(self.sequences)}"
            )
        self.negatives = int(negatives)
        self._lengths = np.array([len(s) for s in self.sequences], dtype=np.int64)
        #: what bucketing sorts by (the lengths; a subclass may sort by a cost of its own)
        self._bucket_keys = self._lengths
        #: position of each sequence in the list this source was made from (see subset)
        self._origin: np.ndarray | None = None

    @property
    def subset_size(self) -> int:
        return self.num_samples

    def subset(self, indices: np.ndarray) -> SequenceBatches:
        """The sequences ``indices`` (non-empty) with the same settings; batches' ``indices``
        keep naming positions in this source's list."""
        idx = np.asarray(indices, dtype=np.int64)
        targets = self.targets
        if targets is not None:
            targets = targets[idx] if isinstance(targets, np.ndarray) else [targets[i] for i in idx]
        negatives = min(self.negatives, max(len(idx) - self.batch_size, 0))
        sub = SequenceBatches(
            [self.sequences[i] for i in idx], targets, self.batch_size, self.shuffle,
            self.bucket_size, self.max_len, negatives,
        )
        sub._origin = idx if self._origin is None else self._origin[idx]
        return sub

    @property
    def num_samples(self) -> int:
        return len(self.sequences)

    def num_batches(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def padding_fraction(self, rng: np.random.Generator | None = None) -> float:
        """Share of padded positions over one epoch's batches (lower is better)."""
        real = padded = 0
        for idx in self._batch_indices(rng):
            lens = self._lengths[idx]
            if self.max_len is not None:
                lens = np.minimum(lens, self.max_len)
            real += int(lens.sum())
            padded += int(lens.max()) * len(idx)
        return 1.0 - real / padded

    def _batch_indices(self, rng: np.random.Generator | None) -> list[np.ndarray]:
        n, b = self.num_samples, self.batch_size
        order = rng.permutation(n) if (self.shuffle and rng is not None) else np.arange(n)
        if self.bucket_size > 1:
            pool = b * self.bucket_size
            chunks = []
            for start in range(0, n, pool):
                chunk = order[start : start + pool]
                chunks.append(chunk[np.argsort(self._bucket_keys[chunk], kind="stable")])
            order = np.concatenate(chunks)
        batches = [order[i : i + b] for i in range(0, n, b)]
        if self.shuffle and rng is not None and self.bucket_size > 1:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _gather_targets(self, idx: np.ndarray) -> np.ndarray | None:
        if self.targets is None:
            return None
        if isinstance(self.targets, np.ndarray):
            return self.targets[idx]
        padded, _ = pad_sequences([self.targets[i] for i in idx], self.max_len)
        return padded

    def batches(self, rng: np.random.Generator | None = None) -> Iterator[PaddedBatch]:
        for idx in self._batch_indices(rng):
            inputs, lengths = pad_sequences([self.sequences[i] for i in idx], self.max_len)
            batch = PaddedBatch(
                inputs=inputs,
                lengths=lengths,
                indices=idx if self._origin is None else self._origin[idx],
                targets=self._gather_targets(idx),
            )
            if self.negatives:
                if rng is None:
                    raise ValueError("SequenceBatches: negatives need a random generator")
                outside = np.setdiff1d(np.arange(self.num_samples), idx, assume_unique=True)
                pick = np.stack([rng.choice(outside, self.negatives, replace=False) for _ in idx])
                pool = self.targets if isinstance(self.targets, np.ndarray) else None
                if pool is not None:
                    batch.negatives = pool[pick]
                else:
                    flat, _ = pad_sequences([self.sequences[i] for i in pick.ravel()], self.max_len)
                    batch.negatives = flat.reshape(len(idx), self.negatives, *flat.shape[1:])
            yield batch
