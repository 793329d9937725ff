"""CodeSeq2Seq: token embedding -> bidirectional LSTM encoder -> bridge -> pointer-generator
decoder, the code optimizer's model."""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import functional as F
from ...autograd import Tensor, no_grad
from ...nn import LSTM, Dropout, Embedding, Linear, Module, PointerGeneratorDecoder
from .config import Seq2SeqConfig


def _id_array(value: Any, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" or arr.ndim != ndim:
        raise ValueError(
            f"{name}: expected a {ndim}-d integer array, got dtype {arr.dtype} shape {arr.shape}"
        )
    return np.ascontiguousarray(arr, dtype=np.int64)


def _vocabulary_ids(value: Any, name: str, vocab_size: int) -> np.ndarray:
    """A 2-d array of vocabulary ids in [0, vocab_size): an extended id (a copied token's,
    >= vocab_size) here is the classic pointer-generator mix-up, named as such."""
    ids = _id_array(value, name, 2)
    bad = np.argwhere((ids < 0) | (ids >= vocab_size))
    if bad.size:
        b, t = (int(i) for i in bad[0])
        raise ValueError(
            f"{name}: id {ids[b, t]} at [{b}, {t}] is not a vocabulary id in [0, {vocab_size}); "
            "tokens outside the vocabulary take the unknown id here, their extended ids go in the "
            "separate extended-id array"
        )
    return ids


class CodeSeq2Seq(Module):
    """Sequence-to-sequence model over code tokens with a copy mechanism.

    * ``embedding`` (vocab_size, embedding_dim), shared by source and target tokens
      (vocabulary ids; ids of tokens outside the vocabulary are the caller's unknown id);
    * ``encoder``: ``LSTM(embedding_dim, hidden_size, num_layers, bidirectional=True,
      dropout)`` over the source with its lengths -> memory (B, S, 2 hidden_size);
    * ``bridge_h``, ``bridge_c``: Linear 2 hidden_size -> hidden_size from the last layer's
      final states of both directions: ``h0 = tanh(bridge_h([h_fwd; h_bwd]))``,
      ``c0 = bridge_c([c_fwd; c_bwd])``;
    * ``decoder``: :class:`~seqlab.nn.PointerGeneratorDecoder` (hidden_size units,
      ``num_heads``-head attention over the memory; the copy distribution is the heads'
      mean attention) predicting the target's extended ids.

    ``dropout`` applies to the embeddings (source and target) and between the encoder's layers.
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embedding = Embedding(c.vocab_size, c.embedding_dim)
        self.encoder = LSTM(
            c.embedding_dim, c.hidden_size, num_layers=c.num_layers, bidirectional=True, dropout=c.dropout
        )
        self.bridge_h = Linear(2 * c.hidden_size, c.hidden_size)
        self.bridge_c = Linear(2 * c.hidden_size, c.hidden_size)
        self.decoder = PointerGeneratorDecoder(
            c.embedding_dim, c.hidden_size, c.vocab_size, 2 * c.hidden_size, num_heads=c.num_heads
        )
        self.embedding_dropout = Dropout(c.dropout)

    def encode(self, source_ids: Any, source_lengths: Any) -> tuple[Tensor, Tensor, Tensor]:
        """Encoder states (B, S, 2H) and the decoder's initial h0, c0 (B, H) for source
        vocabulary ids (B, S) with lengths (B,) in [1, S]."""
        src = _vocabulary_ids(source_ids, "source_ids", self.config.vocab_size)
        lengths = _id_array(source_lengths, "source_lengths", 1)
        if lengths.shape != (src.shape[0],) or lengths.min() < 1 or lengths.max() > src.shape[1]:
            raise ValueError(
                f"source_lengths: expected ({src.shape[0]},) lengths in [1, {src.shape[1]}], "
                f"got shape {lengths.shape} range [{lengths.min()}, {lengths.max()}]"
            )
        x = self.embedding_dropout(self.embedding(src))
        memory, (h_n, c_n) = self.encoder(x, lengths=lengths)
        batch, hidden = src.shape[0], self.config.hidden_size

        def last_layer(state: Tensor) -> Tensor:  # (2L, B, H) -> (B, 2H), [forward; backward]
            return state[state.shape[0] - 2 :].transpose(1, 0, 2).reshape(batch, 2 * hidden)

        h0 = F.tanh(self.bridge_h(last_layer(h_n)))
        c0 = self.bridge_c(last_layer(c_n))
        return memory, h0, c0

    def forward(
        self,
        source_ids: Any,
        source_lengths: Any,
        source_ext_ids: Any,
        target_ids: Any,
        target_ext_ids: Any,
        target_lengths: Any,
        extended_size: int,
    ) -> Tensor:
        """Mean NLL per target token (a scalar Tensor).

        source_ids (B, S) vocabulary ids with source_lengths (B,); source_ext_ids (B, S)
        their extended ids (V + k for the k-th distinct source token outside the
        vocabulary); target_ids (B, T) vocabulary ids of the target (step t reads token
        t-1, step 0 the decoder's start) and target_ext_ids (B, T) the extended ids it
        predicts, with target_lengths (B,) in [0, T]; extended_size: V + the largest
        number of OOV slots in the batch.
        """
        memory, h0, c0 = self.encode(source_ids, source_lengths)
        lengths = np.asarray(source_lengths, dtype=np.int64)
        tgt = _vocabulary_ids(target_ids, "target_ids", self.config.vocab_size)
        tgt_lengths = _id_array(target_lengths, "target_lengths", 1)
        if tgt_lengths.shape != (tgt.shape[0],):
            raise ValueError(f"target_lengths: expected shape ({tgt.shape[0]},), got {tgt_lengths.shape}")
        mask = np.arange(tgt.shape[1])[None, :] < tgt_lengths[:, None]
        inputs = self.embedding_dropout(self.embedding(tgt))
        return self.decoder(
            inputs, memory, source_ext_ids, target_ext_ids, mask, extended_size, lengths, h0, c0
        )


class DecoderSession:
    """Incremental decoding of a batch of sources with a :class:`CodeSeq2Seq` (a
    :class:`~seqlab.models.code.search.StepSession`): the encoder runs once here, the
    decoder's keys and values are projected once, and every :meth:`step` is one C++
    call (LSTM step, attention over the cached keys and values, copy mixture).

    A previous token's extended id ``>= vocab_size`` (a copied source token) is read
    back as ``unk_id``'s embedding. The model should be in eval mode (no dropout).

    ``precision="bf16"`` makes a bf16 copy of the vocabulary projection's weight for the
    session (once) and streams it in every step, half the bytes of the fp32 weight (the
    step's time is reading it); the candidates that can rank among a row's k best are
    re-scored in fp32, so beam search and greedy choose the fp32 step's tokens (up to
    near ties of a copied and a vocabulary token), with log-probabilities within ~1e-6
    (peaked rows) to ~1e-4 (flat rows) of the fp32 ones: the other ids' bf16 terms in the
    log-sum-exp (see :meth:`seqlab.nn.PointerGeneratorDecoder.stepper`). Sampling reads
    the bf16 log-probabilities of the other ids.
    """

    def __init__(
        self,
        model: CodeSeq2Seq,
        source_ids: Any,
        source_lengths: Any,
        source_ext_ids: Any,
        extended_size: int,
        unk_id: int,
        precision: str = "fp32",
    ) -> None:
        self.model = model
        self.unk_id = int(unk_id)
        self.vocab_size = model.config.vocab_size
        if not 0 <= self.unk_id < self.vocab_size:
            raise ValueError(f"unk_id: expected a vocabulary id in [0, {self.vocab_size}), got {unk_id}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision: expected 'fp32' or 'bf16', got {precision!r}")
        with no_grad():
            memory, h0, c0 = model.encode(source_ids, source_lengths)
        self.batch = int(memory.shape[0])
        self.extended_size = int(extended_size)
        self._h0, self._c0 = h0.data, c0.data
        lengths = np.ascontiguousarray(source_lengths, dtype=np.int64)
        self._stepper = model.decoder.stepper(memory.data, lengths, source_ext_ids, extended_size, precision)
        self._embedding = model.embedding.weight.data
        self._start = model.decoder.start.data

    def initial_state(self) -> tuple[np.ndarray, np.ndarray]:
        """The decoder's initial states h0, c0 (B, H) (fresh copies)."""
        return self._h0.copy(), self._c0.copy()

    def _inputs(self, rows: np.ndarray, prev: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """rows as int64 and the input embeddings (N, E) of tokens prev (None: the start)."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if prev is None:
            return rows, np.ascontiguousarray(np.broadcast_to(self._start, (rows.size, self._start.size)))
        ids = np.asarray(prev, dtype=np.int64)
        return rows, self._embedding[np.where(ids >= self.vocab_size, self.unk_id, ids)]

    def step(
        self, rows: np.ndarray, prev: np.ndarray | None, h: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Log-probabilities (N, X) of the next extended id and the new h, c (N, H) for rows
        (N,) of examples after tokens prev (N,) (None: the first step)."""
        rows, x = self._inputs(rows, prev)
        logp, h_new, c_new, _ = self._stepper.step(rows, x, np.ascontiguousarray(h), np.ascontiguousarray(c))
        return logp, h_new, c_new

    def step_top_k(
        self, rows: np.ndarray, prev: np.ndarray | None, h: np.ndarray, c: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The same step, returning each row's min(k, X) most likely next extended ids
        (N, k) and their log-probabilities (N, k), largest first (ties: the smaller id),
        and the new h, c (N, H): picked in C++ in the pass that computes the
        log-probabilities, which never leave it (what beam search reads)."""
        rows, x = self._inputs(rows, prev)
        return self._stepper.step_top_k(
            rows, x, np.ascontiguousarray(h), np.ascontiguousarray(c), min(int(k), self.extended_size)
        )
