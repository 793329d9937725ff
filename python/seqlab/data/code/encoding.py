"""Token ids for a pointer-generator model: a vocabulary of frequent tokens plus a
per-example extended vocabulary for copying.

With a vocabulary of size ``V`` (``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3, then the
frequent tokens), each source's out-of-vocabulary tokens get the extended ids ``V``,
``V + 1``, ... in order of first occurrence (its *OOV list*). Two arrays are kept apart,
always:

- *vocabulary ids* (``src_ids``, ``tgt_in``): every id ``< V``, OOV tokens as ``<unk>``;
  these index embeddings;
- *extended ids* (``src_ext``, ``tgt_out``): an OOV token of the source as its extended id;
  these index the mixed output distribution (vocabulary probabilities followed by the copy
  probabilities scattered onto the source's extended ids) and are the loss targets. A target
  token that is neither in the vocabulary nor in its source's OOV list is ``<unk>``.

Pairs longer than the maximum lengths are truncated (source: its first ``max_source``
tokens; target: its first ``max_target`` tokens, then ``</s>``) and counted, or refused
with ``on_long="error"``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..batching import SequenceBatches
from ..vocabulary import UNK, Vocabulary
from .pairs import CodePair

BOS, EOS = "<s>", "</s>"
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


def build_code_vocabulary(
    pairs: Sequence[CodePair], max_size: int = 50_000, min_count: int = 2
) -> Vocabulary:
    """The vocabulary of the sources and targets of (training) pairs: ``<pad>``, ``<unk>``,
    ``<s>``, ``</s>``, then tokens seen at least ``min_count`` times, most frequent first,
    at most ``max_size`` ids in all."""
    texts = (toks for p in pairs for toks in (p.source_tokens, p.target_tokens))
    return Vocabulary.build(texts, min_count=min_count, max_size=max_size, specials=(BOS, EOS))


def check_code_vocabulary(vocab: Vocabulary) -> None:
    if vocab.itos[2:4] != [BOS, EOS]:
        raise ValueError(f"vocab: ids 2 and 3 must be {BOS!r} and {EOS!r}, got {vocab.itos[2:4]}")


def source_ids(tokens: Sequence[str], vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(ids, extended ids, OOV list)`` of source tokens: ``(S,)`` int64 each."""
    ids = vocab.encode(tokens)
    ext = ids.copy()
    oovs: list[str] = []
    index: dict[str, int] = {}
    for i in np.flatnonzero(ids == UNK_ID):
        tok = tokens[int(i)]
        if tok == UNK:
            continue
        if tok not in index:
            index[tok] = len(vocab) + len(oovs)
            oovs.append(tok)
        ext[i] = index[tok]
    return ids, ext, oovs


def target_ids(
    tokens: Sequence[str], vocab: Vocabulary, oovs: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``(decoder input ids, loss target extended ids)`` of target tokens, ``(T + 1,)``
    each: the vocabulary ids then ``<pad>``, and the extended ids then ``</s>``.

    The decoder (:class:`~seqlab.nn.PointerGeneratorDecoder`) starts from its learned
    ``start`` input and reads ``inputs[t - 1]`` at step ``t``: the token it predicted at step
    ``t - 1``, exactly what an incremental decoder feeds back. So ``inputs[t]`` is target
    token ``t`` (no ``<s>`` in front, which would make training read the token before the
    previous one) and the last entry is never read."""
    ids = vocab.encode(tokens)
    ext = ids.copy()
    if len(oovs):
        index = {t: len(vocab) + k for k, t in enumerate(oovs)}
        for i in np.flatnonzero(ids == UNK_ID):
            ext[i] = index.get(tokens[int(i)], UNK_ID)
    return np.concatenate([ids, [PAD_ID]]), np.concatenate([ext, [EOS_ID]])


def decode_ids(ids: Sequence[int] | np.ndarray, vocab: Vocabulary, oovs: Sequence[str]) -> list[str]:
    """Tokens of extended ids, up to the first ``</s>`` (padding, ``<s>`` dropped)."""
    v = len(vocab)
    out = []
    for i in np.asarray(ids, dtype=np.int64).tolist():
        if i == EOS_ID:
            break
        if i in (PAD_ID, BOS_ID):
            continue
        if i >= v:
            if i - v >= len(oovs):
                raise ValueError(
                    f"ids: extended id {i} beyond the {len(oovs)} OOV tokens of the source (V={v})"
                )
            out.append(oovs[i - v])
        else:
            out.append(vocab.itos[i])
    return out


@dataclass
class EncodedPairs:
    """Pairs as padded int64 arrays (see the module docstring): every pair of a split, or
    one batch of them (:meth:`rows`).

    Attributes:
        src_ids, src_ext: ``(N, S)`` vocabulary ids and extended ids of the sources.
        src_len: ``(N,)`` source lengths.
        tgt_in: ``(N, T + 1)`` decoder inputs: target vocabulary ids (step ``t`` reads
            ``tgt_in[:, t - 1]``, step 0 the decoder's start; see :func:`target_ids`).
        tgt_out: ``(N, T + 1)`` loss targets: target extended ids then ``</s>``.
        tgt_len: ``(N,)`` target lengths including ``</s>``.
        oovs: per pair, its source's OOV tokens (extended ids ``V``, ``V + 1``, ...).
        vocab_size: ``V``.
        truncated_source, truncated_target: pairs cut to the maximum lengths.
        indices: for a batch, the rows it was taken from; else None.
    """

    src_ids: np.ndarray
    src_ext: np.ndarray
    src_len: np.ndarray
    tgt_in: np.ndarray
    tgt_out: np.ndarray
    tgt_len: np.ndarray
    oovs: list[list[str]]
    vocab_size: int
    truncated_source: int = 0
    truncated_target: int = 0
    indices: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.src_len)

    @property
    def max_oov(self) -> int:
        """The longest OOV list: the extended distribution has ``V + max_oov`` entries."""
        return max((len(o) for o in self.oovs), default=0)

    def rows(self, idx: np.ndarray) -> EncodedPairs:
        """The pairs ``idx`` (a batch), trimmed to their longest source and target."""
        s = max(1, int(self.src_len[idx].max()))
        t = int(self.tgt_len[idx].max())
        return EncodedPairs(
            self.src_ids[idx, :s],
            self.src_ext[idx, :s],
            self.src_len[idx],
            self.tgt_in[idx, :t],
            self.tgt_out[idx, :t],
            self.tgt_len[idx],
            [self.oovs[i] for i in idx],
            self.vocab_size,
            indices=np.asarray(idx),
        )


CodeBatch = EncodedPairs  # a batch is the EncodedPairs of its rows


def encode_pairs(
    pairs: Sequence[CodePair],
    vocab: Vocabulary,
    max_source: int = 100,
    max_target: int = 100,
    on_long: str = "truncate",
) -> EncodedPairs:
    """The arrays of ``pairs`` (see :class:`EncodedPairs`).

    Args:
        on_long: ``"truncate"`` (cut and count) or ``"error"`` (raise ValueError naming the
            pair's file and line).
    """
    check_code_vocabulary(vocab)
    if on_long not in ("truncate", "error"):
        raise ValueError(f"on_long: expected 'truncate' or 'error', got {on_long!r}")
    if not pairs:
        raise ValueError("encode_pairs: no pairs given")
    n = len(pairs)
    src_ids = np.zeros((n, max_source), np.int64)
    src_ext = np.zeros((n, max_source), np.int64)
    tgt_in = np.zeros((n, max_target + 1), np.int64)
    tgt_out = np.zeros((n, max_target + 1), np.int64)
    src_len = np.zeros(n, np.int64)
    tgt_len = np.zeros(n, np.int64)
    oovs, cut_s, cut_t = [], 0, 0
    for k, p in enumerate(pairs):
        s, t = p.source_tokens, p.target_tokens
        if len(s) > max_source or len(t) > max_target:
            if on_long == "error":
                raise ValueError(
                    f"{p.file}, line {p.line}: {p.task} pair of {len(s)} source and {len(t)} target tokens, "
                    f"longer than max_source={max_source} / max_target={max_target}"
                )
            cut_s += len(s) > max_source
            cut_t += len(t) > max_target
            s, t = s[:max_source], t[:max_target]
        ids, ext, oov = source_ids(s, vocab)
        tin, tout = target_ids(t, vocab, oov)
        src_ids[k, : len(s)], src_ext[k, : len(s)], src_len[k] = ids, ext, len(s)
        tgt_in[k, : len(tin)], tgt_out[k, : len(tout)], tgt_len[k] = tin, tout, len(tout)
        oovs.append(oov)
    return EncodedPairs(src_ids, src_ext, src_len, tgt_in, tgt_out, tgt_len, oovs, len(vocab), cut_s, cut_t)


class CodeBatches(SequenceBatches):
    """Batches of :class:`EncodedPairs` for :class:`seqlab.train.Trainer` (the batch-source
    protocol of :mod:`seqlab.data.batching`): seeded shuffling, rows gathered and trimmed
    with NumPy indexing, and bucketing within pools of ``bucket_size`` batches by target
    length, then source length: a step's cost grows with its batch's longest target (the
    decoder's time loop and the vocabulary projection of every step), so batches of pairs
    of similar target length waste little on padding when the tasks' targets differ as
    much as a line and a function body."""

    def __init__(
        self, encoded: EncodedPairs, batch_size: int = 32, shuffle: bool = True, bucket_size: int = 32
    ) -> None:
        super().__init__(
            [np.empty(int(n)) for n in np.maximum(encoded.src_len, 1)],
            batch_size=batch_size,
            shuffle=shuffle,
            bucket_size=bucket_size,
        )
        self.encoded = encoded
        width = int(encoded.src_len.max(initial=0)) + 1
        self._bucket_keys = encoded.tgt_len.astype(np.int64) * width + self._lengths

    def subset(self, indices: np.ndarray) -> CodeBatches:
        """The pairs ``indices`` with the same settings (a rank's shard under MPI)."""
        idx = np.asarray(indices, dtype=np.int64)
        sub = CodeBatches(self.encoded.rows(idx), self.batch_size, self.shuffle, self.bucket_size)
        sub._origin = idx if self._origin is None else self._origin[idx]
        return sub

    def batches(self, rng: np.random.Generator | None = None) -> Iterator[EncodedPairs]:  # type: ignore[override]
        for idx in self._batch_indices(rng):
            yield self.encoded.rows(idx)
