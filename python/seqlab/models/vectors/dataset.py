"""From the user's data to gated, normalised, chain-split vector chains."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...data.batching import pad_sequences
from ...data.chain_gates import GateReport, apply_quality_gates
from ...data.documents import Document, load_documents
from ...data.embedding_cache import cached_embeddings
from ...data.text_encoders import make_encoder
from ...data.vector_chains import VectorChains, check_disjoint, load_vector_chains, split_indices
from .baselines import unit_rows
from .config import VectorPredictorConfig

SPLITS = ("train", "val", "test")


@dataclass
class VectorData:
    """The prepared corpus.

    Attributes:
        splits: ``train`` / ``val`` / ``test`` chains (unit vectors), disjoint by chain.
        gates: what the quality gates removed.
        source: a description of where the data came from.
        encoder: the fitted text encoder when built from text, else None.
    """

    splits: dict[str, VectorChains]
    gates: GateReport
    source: str
    encoder: Any = None

    @property
    def dim(self) -> int:
        return self.splits["train"].dim

    def summary(self) -> str:
        parts = ", ".join(f"{s} {len(c)} chains / {c.num_vectors} vectors" for s, c in self.splits.items())
        return f"{self.source}: {parts}; dim {self.dim}"


def _is_text(data: Any) -> bool:
    if data is None:
        return True
    if isinstance(data, (str, Path)):
        return Path(data).is_dir()
    return (isinstance(data, (list, tuple)) and len(data) > 0
            and all(isinstance(d, (str, Document)) for d in data))


def _partition(chains: VectorChains, assignment: dict[str, str]) -> dict[str, VectorChains]:
    splits = {s: chains.subset([i for i, n in enumerate(chains.names) if assignment[n] == s]) for s in SPLITS}
    check_disjoint(splits)
    return splits


def _normalised(chains: VectorChains) -> VectorChains:
    return VectorChains(unit_rows(chains.vectors), chains.offsets, chains.names, chains.source, chains.texts)


def _from_text(data: Any, config: VectorPredictorConfig, verbose: bool) -> VectorData:
    start = time.perf_counter()
    docs, source = load_documents(data, unit=config.unit)
    docs = [d for d in docs if d.chunks]
    names = [d.name for d in docs]
    if len(set(names)) != len(names):
        names = [f"{d.name}#{i}" for i, d in enumerate(docs)]
    parts = split_indices(len(docs), config.split, config.seed, f"documents of {source}")
    assignment = {names[i]: s for s, idx in parts.items() for i in idx}
    encoder = make_encoder(config.encoder, dim=config.encoder_dim, seed=config.seed)
    train_chunks = [c for i in parts["train"] for c in docs[i].chunks]
    if verbose:
        print(f"{source}: {len(docs)} documents, {sum(len(d.chunks) for d in docs)} {config.unit}s; "
              f"fitting the {getattr(encoder, 'name', type(encoder).__name__)} encoder on the "
              f"{len(train_chunks)} training chunks", flush=True)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):  # sparse-dominated: threads only contend here
        encoder.fit(train_chunks)
        texts = [c for d in docs for c in d.chunks]
        vectors = cached_embeddings(getattr(encoder, "cache_key", None), texts, encoder.encode, verbose)
    lengths = [len(d.chunks) for d in docs]
    chains = VectorChains(vectors, np.concatenate([[0], np.cumsum(lengths)]), names, source, texts)
    gated, report = apply_quality_gates(chains, config.min_length, config.coherence, config.dedupe)
    splits = _partition(_normalised(gated), assignment)
    if verbose:
        print(f"embedded in {time.perf_counter() - start:.1f}s; {report.summary()}", flush=True)
    return VectorData(splits, report, source, encoder)


def _from_vectors(data: Any, config: VectorPredictorConfig) -> VectorData:
    chains = load_vector_chains(data)
    gated, report = apply_quality_gates(chains, config.min_length, config.coherence, config.dedupe)
    parts = split_indices(len(gated), config.split, config.seed, f"chains of {chains.source}")
    assignment = {gated.names[i]: s for s, idx in parts.items() for i in idx}
    if len(set(gated.names)) != len(gated.names):
        raise ValueError(f"{chains.source}: chain names must be unique to split by chain")
    return VectorData(_partition(_normalised(gated), assignment), report, chains.source)


def prepare(data: Any, config: VectorPredictorConfig, verbose: bool = True) -> VectorData:
    """Loads ``data`` (None, a folder of text, documents, an ``.npz``, a list of arrays or
    :class:`VectorChains`), applies the quality gates, splits by chain and normalises.

    Raises ValueError when a split ends up without windows (too little data).
    """
    prepared = _from_text(data, config, verbose) if _is_text(data) else _from_vectors(data, config)
    for split in ("train", "val"):
        if prepared.splits[split].num_vectors < 2 and (split == "train" or config.split[1] > 0):
            raise ValueError(f"{prepared.source}: the {split} split has no window after the quality gates "
                             f"({prepared.gates.summary()}); give more chains")
    if verbose and not _is_text(data):
        print(prepared.gates.summary(), flush=True)
    return prepared


def as_windows_input(contexts: Any, dim: int, context: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Contexts given to ``predict_next`` as padded unit windows ``(B, T, D)``, lengths, and
    whether a single context was given. Each keeps its last ``context`` vectors."""
    single = False
    if isinstance(contexts, np.ndarray) and contexts.dtype != object:
        if contexts.ndim == 2:
            contexts, single = contexts[None], True
        if contexts.ndim != 3:
            raise ValueError(f"contexts: expected (T, D), (B, T, D) or a list of (T_i, D) arrays, "
                             f"got shape {contexts.shape}")
        seqs: Sequence[np.ndarray] = list(contexts)
    elif isinstance(contexts, (list, tuple)):
        seqs = [np.asarray(c) for c in contexts]
    else:
        raise TypeError(f"contexts: expected arrays, got {type(contexts).__name__}")
    if not seqs:
        raise ValueError("contexts: no context given")
    out = []
    for i, s in enumerate(seqs):
        if s.dtype == object or s.ndim != 2:
            raise ValueError(f"contexts[{i}]: expected a (T, D) array, got "
                             f"{'a ragged array' if s.dtype == object else f'shape {s.shape}'}")
        if s.shape[1] != dim:
            raise ValueError(f"contexts[{i}]: vectors of dimension {s.shape[1]}, but the model was "
                             f"trained on dimension {dim}")
        if len(s) == 0:
            raise ValueError(f"contexts[{i}]: is empty (needs at least one vector)")
        if not np.isfinite(s).all():
            raise ValueError(f"contexts[{i}]: holds NaN or infinite values")
        out.append(unit_rows(s[-context:]))
    padded, lengths = pad_sequences(out)
    return padded, lengths, single
