"""Quality gates for vector chains: duplicates, short chains, incoherent chains.

Each gate reports what it removed, so a gate that throws away most of the data is seen
at once rather than discovered later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .vector_chains import VectorChains, unit_rows


@dataclass
class GateReport:
    """What the quality gates removed.

    Attributes:
        chains_in, vectors_in: the corpus before the gates.
        zero_vectors: all-zero vectors (e.g. chunks with no known word), dropped.
        duplicate_vectors: vectors equal to an earlier vector of the corpus, dropped
            from their chains.
        short_chains: chains left with fewer than ``min_length`` vectors.
        incoherent_chains: chains whose mean cosine between consecutive vectors fell
            below the coherence threshold.
        chains_out, vectors_out: what is left.
    """

    chains_in: int
    vectors_in: int
    zero_vectors: int = 0
    duplicate_vectors: int = 0
    short_chains: int = 0
    short_chain_vectors: int = 0
    incoherent_chains: int = 0
    incoherent_chain_vectors: int = 0
    chains_out: int = 0
    vectors_out: int = 0
    settings: dict[str, float] = field(default_factory=dict)

    @property
    def kept_share(self) -> float:
        """Share of the input vectors that passed every gate."""
        return self.vectors_out / max(self.vectors_in, 1)

    def summary(self) -> str:
        """One line per gate, e.g. for the recipe's output."""
        return (
            f"quality gates: {self.chains_in} chains / {self.vectors_in} vectors in; removed "
            f"{self.zero_vectors} zero vectors, {self.duplicate_vectors} duplicate vectors, "
            f"{self.short_chains} chains shorter than "
            f"{int(self.settings.get('min_length', 0))} ({self.short_chain_vectors} vectors), "
            f"{self.incoherent_chains} chains below coherence "
            f"{self.settings.get('coherence', 0.0):g} ({self.incoherent_chain_vectors} vectors); "
            f"{self.chains_out} chains / {self.vectors_out} vectors kept ({self.kept_share:.1%})"
        )

    def to_dict(self) -> dict[str, float]:
        return {
            "chains_in": self.chains_in, "vectors_in": self.vectors_in,
            "zero_vectors": self.zero_vectors, "duplicate_vectors": self.duplicate_vectors,
            "short_chains": self.short_chains,
            "short_chain_vectors": self.short_chain_vectors, "incoherent_chains": self.incoherent_chains,
            "incoherent_chain_vectors": self.incoherent_chain_vectors, "chains_out": self.chains_out,
            "vectors_out": self.vectors_out, "kept_share": self.kept_share, **self.settings,
        }


def chain_coherence(chains: VectorChains) -> np.ndarray:
    """``(C,)`` mean cosine between consecutive vectors of each chain (NaN for length < 2)."""
    v = chains.vectors
    unit = unit_rows(v)
    pair = np.einsum("ij,ij->i", unit[:-1], unit[1:]) if len(v) > 1 else np.zeros(0, np.float32)
    out = np.full(len(chains), np.nan)
    for i, (a, b) in enumerate(zip(chains.offsets[:-1], chains.offsets[1:])):
        if b - a >= 2:
            out[i] = float(pair[a : b - 1].mean())
    return out


def _first_occurrences(vectors: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: the row is not an exact repeat of an earlier row."""
    seen: set[bytes] = set()
    keep = np.ones(len(vectors), dtype=bool)
    for r, row in enumerate(vectors):
        key = row.tobytes()
        keep[r] = key not in seen
        seen.add(key)
    return keep


def _keep_vectors(chains: VectorChains, keep: np.ndarray) -> VectorChains:
    """The chains with only the rows where ``keep`` is True (every chain kept, maybe shorter)."""
    if keep.all():
        return chains
    chain_of_row = np.repeat(np.arange(len(chains)), chains.lengths)
    lengths = np.bincount(chain_of_row[keep], minlength=len(chains))
    texts = None if chains.texts is None else [t for t, k in zip(chains.texts, keep) if k]
    return VectorChains(chains.vectors[keep], np.concatenate([[0], np.cumsum(lengths)]), chains.names,
                        chains.source, texts)


def apply_quality_gates(
    chains: VectorChains,
    min_length: int = 7,
    coherence: float = 0.0,
    dedupe: bool = True,
) -> tuple[VectorChains, GateReport]:
    """Removes all-zero vectors and duplicate vectors, then chains shorter than ``min_length``, then chains
    whose mean consecutive cosine is below ``coherence`` (0.0 keeps every chain whose
    neighbours are not anti-correlated on average; -1 disables the gate).

    Returns the kept chains and a :class:`GateReport`.
    """
    if not isinstance(min_length, (int, np.integer)) or min_length < 2:
        raise ValueError(f"min_length: expected an integer >= 2 (a chain needs a context and a next "
                         f"vector), got {min_length!r}")
    if not -1.0 <= coherence <= 1.0:
        raise ValueError(f"coherence: expected a cosine threshold in [-1, 1], got {coherence}")
    report = GateReport(len(chains), chains.num_vectors,
                        settings={"min_length": int(min_length), "coherence": float(coherence),
                                  "dedupe": float(dedupe)})
    nonzero = np.abs(chains.vectors).max(axis=1, initial=0.0) > 0
    report.zero_vectors = int((~nonzero).sum())
    chains = _keep_vectors(chains, nonzero)
    if dedupe:
        first = _first_occurrences(chains.vectors)
        report.duplicate_vectors = int((~first).sum())
        chains = _keep_vectors(chains, first)
    lengths = chains.lengths
    long_enough = lengths >= min_length
    report.short_chains = int((~long_enough).sum())
    report.short_chain_vectors = int(lengths[~long_enough].sum())
    chains = chains.subset(np.flatnonzero(long_enough))
    if coherence > -1.0 and len(chains):
        scores = chain_coherence(chains)
        coherent = scores >= coherence
        report.incoherent_chains = int((~coherent).sum())
        report.incoherent_chain_vectors = int(chains.lengths[~coherent].sum())
        chains = chains.subset(np.flatnonzero(coherent))
    report.chains_out, report.vectors_out = len(chains), chains.num_vectors
    if not len(chains):
        raise ValueError(f"{chains.source}: no chain passed the quality gates. {report.summary()}")
    return chains, report
