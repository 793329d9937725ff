"""Vector chains: ordered sequences of embeddings (one per text chunk of a document).

A corpus of chains is stored flat, as in the ``.npz`` format the recipes read:
``vectors`` ``(N, D)`` float32 with ``chain_offsets`` ``(C + 1,)`` (chain ``i`` is
``vectors[offsets[i]:offsets[i + 1]]``) or ``chain_ids`` ``(N,)`` (consecutive rows with
the same id form a chain).
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32 and contiguous."""
    x = np.asarray(x, dtype=np.float32)
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))


@dataclass
class VectorChains:
    """Chains of D-dimensional vectors stored flat.

    Attributes:
        vectors: ``(N, D)`` float32, the chains one after another.
        offsets: ``(C + 1,)`` int64, chain ``i`` is ``vectors[offsets[i]:offsets[i + 1]]``.
        names: C chain names (file names, module names, ``"chain 12"``).
        source: where the chains came from, for reports.
        texts: the chunk text of every vector when built from text, else None.
    """

    vectors: np.ndarray
    offsets: np.ndarray
    names: list[str]
    source: str = "arrays"
    texts: list[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        if self.vectors.ndim != 2:
            raise ValueError(f"{self.source}: vectors must be (N, D), got shape {self.vectors.shape}")
        if self.offsets.ndim != 1 or len(self.offsets) < 1 or self.offsets[0] != 0:
            raise ValueError(f"{self.source}: chain offsets must be a 1-d array starting at 0")
        if self.offsets[-1] != len(self.vectors) or (np.diff(self.offsets) < 0).any():
            raise ValueError(
                f"{self.source}: chain offsets must be non-decreasing and end at the number of "
                f"vectors ({len(self.vectors)}), got last offset {int(self.offsets[-1])}"
            )
        if len(self.names) != len(self.offsets) - 1:
            raise ValueError(f"{self.source}: {len(self.names)} names for {len(self.offsets) - 1} chains")
        if self.texts is not None and len(self.texts) != len(self.vectors):
            raise ValueError(f"{self.source}: {len(self.texts)} texts for {len(self.vectors)} vectors")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __repr__(self) -> str:
        return (
            f"VectorChains({len(self)} chains, {self.num_vectors} vectors of dim {self.dim}, "
            f"source={self.source!r})"
        )

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def num_vectors(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        """``(C,)`` vectors per chain."""
        return np.diff(self.offsets)

    def chain(self, i: int) -> np.ndarray:
        """Chain ``i`` as a ``(L_i, D)`` view."""
        return self.vectors[self.offsets[i] : self.offsets[i + 1]]

    def subset(self, chains: Sequence[int] | np.ndarray) -> VectorChains:
        """The chains at the given positions, in that order."""
        idx = np.asarray(chains, dtype=np.int64)
        if len(idx) == 0:
            return VectorChains(np.zeros((0, self.dim), np.float32), np.zeros(1, np.int64), [],
                                self.source, [] if self.texts is not None else None)
        rows = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in idx])
        lengths = self.lengths[idx]
        return VectorChains(
            self.vectors[rows],
            np.concatenate([[0], np.cumsum(lengths)]),
            [self.names[i] for i in idx],
            self.source,
            None if self.texts is None else [self.texts[r] for r in rows],
        )

    def chain_digests(self) -> list[str]:
        """A content hash of every chain (its vectors' bytes), to detect the same chain twice."""
        return [hashlib.sha1(self.chain(i).tobytes()).hexdigest() for i in range(len(self))]

    def save(self, path: str | Path) -> Path:
        """Writes the ``.npz`` format :func:`load_vector_chains` reads (with ``names``)."""
        path = Path(path)
        with open(path, "wb") as f:
            np.savez(f, vectors=self.vectors, chain_offsets=self.offsets, names=np.array(self.names))
        return path


def _check_rows(vectors: np.ndarray, offsets: np.ndarray, names: Sequence[str], source: str) -> None:
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        chain = int(np.searchsorted(offsets, row, side="right") - 1)
        raise ValueError(
            f"{source}: {int(bad.sum())} vectors hold NaN or infinity; the first is vector "
            f"{row - int(offsets[chain])} of chain {chain} ({names[chain]!r})"
        )


def _from_arrays(arrays: Sequence[Any], source: str) -> VectorChains:
    if len(arrays) == 0:
        raise ValueError(f"{source}: no chains given (an empty list)")
    chains: list[np.ndarray] = []
    dim: int | None = None
    for i, a in enumerate(arrays):
        arr = np.asarray(a)
        if arr.dtype == object or arr.ndim != 2:
            raise ValueError(
                f"{source}: chain {i} must be a (length, dim) array of numbers, got "
                f"{'a ragged array' if arr.dtype == object else f'shape {arr.shape}'}"
            )
        if not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{source}: chain {i} holds {arr.dtype}, expected numbers")
        if dim is None:
            dim = arr.shape[1]
        elif arr.shape[1] != dim:
            raise ValueError(
                f"{source}: chain {i} has vectors of dimension {arr.shape[1]}, chain 0 has {dim}"
            )
        chains.append(arr.astype(np.float32, copy=False))
    lengths = [len(c) for c in chains]
    vectors = np.concatenate(chains) if sum(lengths) else np.zeros((0, dim or 0), np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    names = [f"chain {i}" for i in range(len(chains))]
    _check_rows(vectors, offsets, names, source)
    return VectorChains(vectors, offsets, names, source)


def _from_npz(path: Path) -> VectorChains:
    # A damaged member surfaces only when it is read, as zipfile's or zlib's own errors:
    # BadZipFile, zlib.error, EOFError, an OSError from a seek to a negative offset, a
    # NotImplementedError for an unknown compression method or zip version, a RuntimeError
    # for a member marked as encrypted.
    try:
        return _read_npz(path)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as e:
        raise ValueError(f"{path}: damaged .npz archive ({type(e).__name__}: {e})") from e


def _read_npz(path: Path) -> VectorChains:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npz archive ({e})") from e
    with archive:
        keys = set(archive.files)

        def member(key: str) -> np.ndarray:
            # NumPy returns the raw bytes of a member that is not a .npy file
            value = archive[key]
            if not isinstance(value, np.ndarray):
                raise ValueError(f"{path}: '{key}' is not a .npy array inside the archive")
            return value

        if "vectors" not in keys:
            raise ValueError(f"{path}: no 'vectors' array (found {sorted(keys)})")
        vectors = member("vectors")
        if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.number):
            raise ValueError(f"{path}: 'vectors' must be a (N, D) array of numbers, got "
                             f"{vectors.dtype} of shape {vectors.shape}")
        n = len(vectors)
        if "chain_offsets" in keys:
            offsets = member("chain_offsets").astype(np.int64)
            if (
                offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != n
                or (np.diff(offsets) < 0).any()
            ):
                raise ValueError(
                    f"{path}: 'chain_offsets' must rise from 0 to the number of vectors ({n}), got "
                    f"{offsets[:5]}... of length {len(offsets)}"
                )
        elif "chain_ids" in keys:
            ids = member("chain_ids")
            if ids.shape != (n,):
                raise ValueError(f"{path}: 'chain_ids' must have shape ({n},), got {ids.shape}")
            changes = np.concatenate([[True], ids[1:] != ids[:-1]])
            starts = np.flatnonzero(changes) if n else np.zeros(0, np.int64)
            offsets = np.concatenate([starts, [n]]).astype(np.int64)
        else:
            raise ValueError(f"{path}: needs 'chain_offsets' or 'chain_ids' beside 'vectors'")
        count = len(offsets) - 1
        names = [str(s) for s in member("names")] if "names" in keys else [
            f"{path.name}:{i}" for i in range(count)
        ]
        if len(names) != count:
            raise ValueError(f"{path}: {len(names)} names for {count} chains")
    vectors = vectors.astype(np.float32, copy=False)
    _check_rows(vectors, offsets, names, str(path))
    return VectorChains(vectors, offsets, names, str(path))


def load_vector_chains(data: Any) -> VectorChains:
    """Chains from an ``.npz`` path, a list of ``(L_i, D)`` arrays, or :class:`VectorChains`.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: ragged or non-2-d chains, dimensions that differ between chains, NaN or
            infinite vectors (naming the chain and position), malformed offsets or ids.
    """
    if isinstance(data, VectorChains):
        return data
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        if path.suffix != ".npz":
            raise ValueError(f"{path}: expected an .npz archive of vectors; for text, give the folder "
                             "that holds the .txt/.md documents")
        return _from_npz(path)
    if isinstance(data, np.ndarray) and data.ndim == 3:
        return _from_arrays(list(data), "arrays")
    if isinstance(data, (list, tuple)):
        return _from_arrays(data, "arrays")
    raise TypeError(
        f"expected an .npz path, a list of (length, dim) arrays or VectorChains, got {type(data).__name__}"
    )


def split_indices(n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                  what: str = "chains") -> dict[str, np.ndarray]:
    """Shuffles ``range(n)`` with ``seed`` and cuts it by the fractions into sorted
    ``train``, ``val`` and ``test`` index arrays; each non-zero fraction gets at least one."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not 0 < sum(fractions) <= 1.0 + 1e-9:
        raise ValueError(f"split fractions: expected three non-negative shares summing to 1, got {fractions}")
    wanted = sum(1 for f in fractions if f > 0)
    if n < wanted:
        raise ValueError(f"{n} {what} cannot fill {wanted} splits; give more data")
    order = np.random.default_rng(seed).permutation(n)
    counts = [int(round(f / sum(fractions) * n)) for f in fractions]
    for i, f in enumerate(fractions):
        if f > 0 and counts[i] == 0:
            counts[i] = 1
    while sum(counts) > n:
        counts[int(np.argmax(counts))] -= 1
    counts[0] += n - sum(counts)
    cuts = np.cumsum([0, *counts])
    return {name: np.sort(order[cuts[i] : cuts[i + 1]]) for i, name in enumerate(("train", "val", "test"))}


def split_chains(
    chains: VectorChains, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, VectorChains]:
    """Splits by chain (never by window) into ``train``, ``val`` and ``test`` (see
    :func:`split_indices`); the result passes :func:`check_disjoint`."""
    parts = split_indices(len(chains), fractions, seed, f"chains of {chains.source}")
    splits = {name: chains.subset(idx) for name, idx in parts.items()}
    check_disjoint(splits)
    return splits


def check_disjoint(splits: dict[str, VectorChains]) -> None:
    """Raises ValueError if a chain (by name or by content) is in two splits."""
    seen: dict[str, str] = {}
    for split, chains in splits.items():
        for name, digest, length in zip(chains.names, chains.chain_digests(), chains.lengths):
            keys = [f"name:{name}"] + ([f"content:{digest}"] if length else [])
            for key in keys:
                if key in seen and seen[key] != split:
                    raise ValueError(
                        f"chain {name!r} is in both the {seen[key]!r} and {split!r} splits "
                        f"(same {key.split(':')[0]}): windows would leak between them"
                    )
                seen[key] = split
