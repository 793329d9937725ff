"""Configuration and presets of the code optimizer's seq2seq model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..presets import PresetConfig, named_preset


@dataclass(frozen=True)
class Seq2SeqConfig(PresetConfig):
    """Everything that defines a code seq2seq model and its training; any field can be overridden.

    Model: a shared token ``embedding_dim`` embedding of a ``vocab_size`` vocabulary
    (the most frequent tokens; the rest are copied from the source through the
    extended vocabulary), a bidirectional ``num_layers`` LSTM encoder of
    ``hidden_size`` units per direction (``dropout`` on the embeddings and between
    layers), a bridge from its last layer's final states to the decoder's, and a
    :class:`~seqlab.nn.PointerGeneratorDecoder` of ``hidden_size`` units with
    ``num_heads``-head attention over the encoder states.
    Data: sources and targets of at most ``max_len`` tokens; ``bug_fix`` units (a function,
    else a window of its statements) of at most ``unit_len`` tokens (capped by ``max_len``),
    ``mutants`` distinct injected bugs per unit (:mod:`seqlab.data.code.mining`); ``completion``
    pairs of up to ``train_completions`` cut points per function in the training files of a
    mined corpus (the held-out files keep the miner's 2 per function; the default 2 adds
    none; 6, the ``small`` preset's, adds 7,374 pairs to the default corpus's 7,605 training
    pairs, about 2x the time per epoch).
    Decoding: beams of ``beam_width`` with GNMT length penalty ``length_penalty``.
    Training: ``epochs`` of ``batch_size`` pairs, AdamW (``lr``, ``weight_decay``),
    gradient norm clipped to ``clip_grad_norm``, the learning rate multiplied by
    ``plateau_factor`` after ``plateau_patience`` epochs without a better validation
    loss, early stopping after ``patience`` such epochs.
    """

    vocab_size: int = 8000
    embedding_dim: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    num_heads: int = 1
    dropout: float = 0.1
    max_len: int = 100
    unit_len: int = 100
    mutants: int = 1
    train_completions: int = 2
    beam_width: int = 5
    length_penalty: float = 0.6
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip_grad_norm: float | None = 5.0
    patience: int = 5
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    seed: int = 0

    settings_name: ClassVar[str] = "code model"

    def __post_init__(self) -> None:
        self.check_positive_ints(("vocab_size", "embedding_dim", "hidden_size", "num_layers", "num_heads",
                                  "max_len", "unit_len", "mutants", "train_completions",
                                  "beam_width", "epochs", "batch_size",
                                  "patience", "plateau_patience"))
        if self.length_penalty < 0:
            raise ValueError(f"length_penalty must be >= 0, got {self.length_penalty}")
        if self.vocab_size < 4:
            raise ValueError(
                f"vocab_size must leave room for the special tokens (>= 4), got {self.vocab_size}"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide hidden_size ({self.hidden_size})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 < self.plateau_factor <= 1.0:
            raise ValueError(f"plateau_factor must be in (0, 1], got {self.plateau_factor}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ValueError(f"clip_grad_norm must be > 0 or None, got {self.clip_grad_norm}")


PRESETS: dict[str, Seq2SeqConfig] = {
    # Seconds: tests, notebooks, smoke runs.
    "tiny": Seq2SeqConfig(
        vocab_size=500, embedding_dim=32, hidden_size=32, max_len=40, epochs=3, dropout=0.0, patience=3
    ),
    # The default: about 10 minutes on 2 cores on the default corpus (benchmarks/RESULTS.md);
    # bug-fix units of at most 40 tokens; up to 6 completion cut points per function of the
    # training files (7,374 more training pairs on the default corpus, completion's exact
    # match 4x the n-gram's instead of within chance of it); dropout 0.2 and early stopping
    # after 3 epochs without a better validation loss (the best epoch is the 4th).
    "small": Seq2SeqConfig(unit_len=40, train_completions=6, dropout=0.2, patience=3),
    "medium": Seq2SeqConfig(
        vocab_size=20000,
        embedding_dim=256,
        hidden_size=256,
        num_layers=2,
        num_heads=4,
        dropout=0.2,
        epochs=30,
        patience=10,
    ),
    # The original project's configuration.
    "original": Seq2SeqConfig(
        vocab_size=50000,
        embedding_dim=256,
        hidden_size=256,
        num_layers=2,
        num_heads=1,
        dropout=0.2,
        max_len=100,
        batch_size=32,
        lr=1e-3,
        clip_grad_norm=5.0,
        patience=15,
        epochs=100,
    ),
}


def preset(name: str, **overrides: Any) -> Seq2SeqConfig:
    """The named preset with ``overrides`` applied."""
    return named_preset(PRESETS, name, overrides)
