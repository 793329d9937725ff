"""Configuration of the code language model and its presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..presets import PresetConfig, named_preset

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class CodeLMConfig(PresetConfig):
    """Everything that defines a code language model run; any field can be overridden.

    Model: a GPT decoder of ``n_layers`` pre-LayerNorm causal blocks (``n_heads`` heads,
    width ``d_model``, MLP ``d_ff``), learned positions up to ``max_len``, ``dropout``,
    the output layer tied to the token embedding; ``vocab_size`` byte-level BPE tokens.
    Training: windows of ``seq_len`` tokens, micro-batches of ``batch_size`` windows,
    ``accumulation`` micro-batches per AdamW step (``lr``, ``weight_decay``, betas
    (0.9, 0.95)), ``warmup_steps`` of linear warmup then cosine decay to ``lr *
    min_lr_ratio``, gradient norm clipped to ``clip_grad_norm``, ``epochs`` epochs,
    a checkpoint every ``checkpoint_every`` epochs and at the best validation loss.
    Corpus: files with ``extensions``, at most ``max_file_bytes`` each and
    ``max_total_bytes`` in all, split by file (``split`` fractions).
    Precision: ``"fp32"``, or ``"bf16"``: the linear layers' GEMMs (attention projections,
    MLP, tied output layer) with bf16 operands and fp32 accumulation, fp32 master weights and
    optimizer state, no loss scaling; where the CPU lacks AVX512_BF16 training stays fp32
    (with a message).
    Evaluation: ``compile_samples`` completions per fixed prompt and one for each of
    ``compile_functions`` held-out functions, up to ``compile_max_tokens`` new tokens each
    at ``compile_temperature``; an
    interpolated Kneser-Ney ``ngram_order``-gram over the same tokens as the baseline.
    """

    vocab_size: int = 4096
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512
    max_len: int = 256
    dropout: float = 0.0
    seq_len: int = 128
    batch_size: int = 16
    accumulation: int = 1
    lr: float = 2e-3
    weight_decay: float = 0.01
    clip_grad_norm: float = 1.0
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    epochs: int = 4
    checkpoint_every: int = 1
    extensions: tuple[str, ...] = (".c", ".h")
    max_file_bytes: int = 100_000
    max_total_bytes: int = 1_500_000
    split: tuple[float, float, float] = (0.9, 0.05, 0.05)
    compile_samples: int = 8
    compile_functions: int = 32
    compile_max_tokens: int = 160
    compile_temperature: float = 0.8
    ngram_order: int = 3
    precision: str = "fp32"
    seed: int = 0

    settings_name: ClassVar[str] = "code LM"
    tuple_fields: ClassVar[tuple[str, ...]] = ("extensions", "split")

    def __post_init__(self) -> None:
        self.check_positive_ints(("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_len",
                                  "seq_len", "batch_size", "accumulation", "epochs", "checkpoint_every",
                                  "max_file_bytes", "max_total_bytes", "compile_max_tokens", "ngram_order"))
        if self.vocab_size < 258:
            raise ValueError(
                f"vocab_size must be at least 258 (end-of-file token and 256 bytes), got {self.vocab_size}"
            )
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.seq_len > self.max_len:
            raise ValueError(f"seq_len ({self.seq_len}) must not exceed max_len ({self.max_len})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0 or self.weight_decay < 0 or self.clip_grad_norm <= 0:
            raise ValueError(
                f"lr and clip_grad_norm must be > 0 and weight_decay >= 0, got {self.lr}, "
                f"{self.clip_grad_norm}, {self.weight_decay}"
            )
        if (self.warmup_steps < 0 or self.compile_samples < 0 or self.compile_functions < 0
                or not 0 <= self.min_lr_ratio <= 1):
            raise ValueError(
                "warmup_steps, compile_samples and compile_functions must be >= 0, min_lr_ratio in [0, 1]"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


PRESETS: dict[str, CodeLMConfig] = {
    # Trains in a few seconds: tests and the notebook.
    "tiny": CodeLMConfig(
        vocab_size=320,
        d_model=32,
        n_layers=2,
        n_heads=2,
        d_ff=64,
        max_len=64,
        seq_len=32,
        batch_size=8,
        lr=3e-3,
        warmup_steps=5,
        epochs=2,
        max_total_bytes=40_000,
        compile_samples=2,
        compile_functions=2,
        compile_max_tokens=24,
    ),
    # The default: minutes on two cores.
    "small": CodeLMConfig(),
    # The original project's configuration.
    "original": CodeLMConfig(
        vocab_size=50_000,
        d_model=256,
        n_layers=6,
        n_heads=8,
        d_ff=1024,
        max_len=512,
        dropout=0.1,
        seq_len=128,
        batch_size=32,
        accumulation=4,
        lr=1e-3,
        weight_decay=0.01,
        clip_grad_norm=1.0,
        warmup_steps=100,
        epochs=10,
        max_file_bytes=1_000_000,
        max_total_bytes=7_200_000,
    ),
}


def preset_config(preset: str = "small", **overrides: Any) -> CodeLMConfig:
    """The config of a preset (``"tiny"``, ``"small"``, ``"original"``) with overrides."""
    return named_preset(PRESETS, preset, overrides, "code LM")
