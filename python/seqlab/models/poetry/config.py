"""Configuration and presets of the poetry autoencoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..presets import PresetConfig, named_preset

CELLS = ("rnn", "lstm", "gru")
LOSSES = ("cosine", "mse", "hybrid")
LR_SCHEDULES = ("constant", "cosine")
VOCAB_CANDIDATES = ("batch", "all")

# (share of the epochs, teacher-forcing ratio, maximum length) phases of a curriculum.
# The original project's: teacher forcing 0.9/20, 0.7/30, 0.3/40, 0.1/50 tokens.
TEACHER_FORCED_CURRICULUM: tuple[tuple[float, float, int], ...] = (
    (0.25, 0.9, 20),
    (0.25, 0.7, 30),
    (0.25, 0.3, 40),
    (0.25, 0.1, 50),
)
# The default: free-running from the first step at full length. The model is judged
# free-running, and on held-out poems (benchmarks/RESULTS.md, "Poetry autoencoder
# quality") teacher forcing let the decoder lean on the previous true word instead of
# the code: free-running training reached a lower free-running validation loss and a
# higher token cosine than the teacher-forced curriculum in the same epochs.
DEFAULT_CURRICULUM: tuple[tuple[float, float, int], ...] = ((1.0, 0.0, 50),)


@dataclass(frozen=True)
class AutoencoderConfig(PresetConfig):
    """Everything that defines a poetry autoencoder run; any field can be overridden.

    Model: ``cell`` (rnn, lstm, gru) encoder of ``hidden_size`` x ``num_layers``
    (``bidirectional``), a ``bottleneck``-dimensional code from its final state, a
    decoder of the same cell and ``decoder_hidden`` units started from the code (and
    fed it at every step when ``code_every_step``), a linear encoder/decoder of the
    padded, flattened sequence beside the recurrent one when ``linear_path`` (started at
    the PCA, the recurrent encoder's share of the code at ``recurrent_code_share`` x its
    random initialisation), with
    ``num_heads``-head attention over the encoder states when ``attention``; in training
    a share ``memory_dropout`` of the rows decodes without the encoder states (from the
    code alone), so attention cannot make the bottleneck useless.
    Loss: ``"cosine"``, ``"mse"`` or ``"hybrid"`` (``cosine_weight`` x cosine distance /
    ``temperature`` + ``mse_weight`` x MSE per token, masked by length), plus
    ``vocab_loss_weight`` x a softmax cross-entropy of each predicted vector against the
    distinct words of its batch (``vocab_candidates="batch"``) or every vocabulary word
    (``"all"``), logits ``pred . word / vocab_temperature``, which trains the nearest word
    to be the true one.
    Data: word vectors from ``embeddings`` (a GloVe/word2vec text file) or fitted on the
    corpus with ``embedding_dim`` dimensions, centred on their mean and scaled to unit
    length when ``center_embeddings`` (word vectors share a large common direction;
    without centring, predicting the mean vector alone scores a high cosine); poems
    chunked into ``max_len`` tokens (``stride`` apart); ``val_fraction``/``test_fraction``
    of the poems held out.
    Training: ``epochs`` (raised on a small corpus until they make at least ``min_steps``
    optimizer steps), ``batch_size``, ``lr`` (with ``lr_schedule`` ``"cosine"``: a
    linear warmup over the first ``warmup`` share of the steps, then cosine decay to
    ``min_lr_ratio`` x ``lr`` at the last epoch; ``"constant"``), ``weight_decay``, ``clip_grad_norm``,
    early stopping after ``patience`` epochs without a better validation loss, the
    teacher-forcing ``curriculum`` ((share of epochs, ratio, max length) phases).
    """

    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = True
    bottleneck: int = 16
    decoder_hidden: int | None = None
    attention: bool = False
    num_heads: int = 8
    code_every_step: bool = False
    linear_path: bool = False
    recurrent_code_share: float = 0.01
    memory_dropout: float = 0.5
    dropout: float = 0.0
    init: str = "orthogonal"
    loss: str = "hybrid"
    cosine_weight: float = 0.9
    mse_weight: float = 0.1
    temperature: float = 1.0
    vocab_loss_weight: float = 0.0
    vocab_temperature: float = 0.1
    vocab_candidates: str = "batch"
    embeddings: str | None = None
    embedding_dim: int = 300
    embedding_epochs: int = 50
    center_embeddings: bool = True
    min_count: int = 1
    max_len: int = 50
    stride: int | None = None
    min_chunk: int = 3
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    epochs: int = 20
    min_steps: int = 0
    batch_size: int = 32
    lr: float = 2e-3
    lr_schedule: str = "cosine"
    warmup: float = 0.02
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.0
    clip_grad_norm: float | None = 1.0
    patience: int = 6
    curriculum: tuple[tuple[float, float, int], ...] = field(default=DEFAULT_CURRICULUM)
    seed: int = 0

    settings_name: ClassVar[str] = "poetry autoencoder"
    tuple_fields: ClassVar[tuple[str, ...]] = ("curriculum",)

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        self.check_positive_ints(("hidden_size", "num_layers", "bottleneck", "max_len", "epochs",
                                  "batch_size", "embedding_dim", "min_count", "num_heads"))
        hidden = self.decoder_hidden or self.hidden_size
        if self.attention and hidden % self.num_heads:
            raise ValueError(
                f"attention needs the decoder hidden size ({hidden}) to be divisible by "
                f"num_heads ({self.num_heads})"
            )
        if (
            not 0.0 <= self.val_fraction < 1.0
            or not 0.0 <= self.test_fraction < 1.0
            or self.val_fraction + self.test_fraction >= 1.0
        ):
            raise ValueError(
                f"val_fraction ({self.val_fraction}) and test_fraction ({self.test_fraction}) "
                "must be in [0, 1) and leave poems for training"
            )
        if not 0.0 <= self.memory_dropout <= 1.0:
            raise ValueError(f"memory_dropout must be in [0, 1], got {self.memory_dropout}")
        if self.temperature <= 0 or self.vocab_temperature <= 0:
            raise ValueError(
                f"temperature ({self.temperature}) and vocab_temperature "
                f"({self.vocab_temperature}) must be > 0"
            )
        if self.vocab_loss_weight < 0:
            raise ValueError(f"vocab_loss_weight must be >= 0, got {self.vocab_loss_weight}")
        if self.vocab_candidates not in VOCAB_CANDIDATES:
            raise ValueError(
                f"vocab_candidates must be one of {VOCAB_CANDIDATES}, got {self.vocab_candidates!r}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.warmup < 1.0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(
                f"warmup ({self.warmup}) must be in [0, 1) and min_lr_ratio ({self.min_lr_ratio}) in [0, 1]"
            )
        if not isinstance(self.min_steps, int) or self.min_steps < 0:
            raise ValueError(f"min_steps must be a non-negative integer, got {self.min_steps!r}")
        if self.recurrent_code_share < 0:
            raise ValueError(f"recurrent_code_share must be >= 0, got {self.recurrent_code_share}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def epochs_for(self, steps_per_epoch: int) -> int:
        """The epochs to train with ``steps_per_epoch`` batches: ``epochs``, or more when
        that many make fewer than ``min_steps`` optimizer steps."""
        return max(self.epochs, -(-self.min_steps // max(1, steps_per_epoch)))

    @property
    def decoder_size(self) -> int:
        return self.decoder_hidden or self.hidden_size

    def normalise(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """The overrides with the curriculum's phases as tuples."""
        if overrides.get("curriculum") is not None:
            overrides["curriculum"] = tuple(tuple(p) for p in overrides["curriculum"])
        return overrides

    def curriculum_phases(self) -> list[tuple[int, float, int]]:
        """The curriculum in epochs: (epochs, teacher-forcing ratio, max length) per phase."""
        shares = [p[0] for p in self.curriculum]
        total = sum(shares)
        phases = []
        used = 0
        for i, (share, ratio, length) in enumerate(self.curriculum):
            n = (
                self.epochs - used
                if i == len(self.curriculum) - 1
                else max(1, round(self.epochs * share / total))
            )
            n = max(1, min(n, self.epochs - used)) if used < self.epochs else 0
            if n:
                phases.append((n, float(ratio), min(int(length), self.max_len)))
            used += n
        return phases


# Every preset holds its linear baseline (``linear_path``, started at the PCA of the
# training chunks), trains it on with a learning rate low enough to keep that start
# (5e-4), and adds the word softmax loss (x0.03) for word recovery; benchmarks/RESULTS.md,
# "Poetry: baselines, presets and reconstruction through the bottleneck", has the runs.
_LEARNS: dict[str, Any] = {"linear_path": True, "lr": 5e-4, "vocab_loss_weight": 0.03}
# The word-recovery objective: the word softmax loss weighted as much as the vector loss
# (x1), the recurrent model alone (no linear path, whose PCA start holds the code at the
# PCA's), trained at 5e-3 for 6 epochs. On poems.json it recovers 2.1x the words of the
# linear baseline through the bottleneck on 3 seeds, and costs token cosine
# (benchmarks/RESULTS.md, "Word recovery on poems.json: the 2x target"), so it is a
# preset of its own rather than the default.
WORDS_OBJECTIVE: dict[str, Any] = {"vocab_loss_weight": 1.0, "lr": 5e-3, "linear_path": False, "epochs": 6}

PRESETS: dict[str, AutoencoderConfig] = {
    "tiny": AutoencoderConfig(
        hidden_size=32, embedding_dim=50, embedding_epochs=20, epochs=12, min_steps=600, max_len=20,
        batch_size=32, patience=4, **_LEARNS,
    ),
    "small": AutoencoderConfig(hidden_size=64, epochs=60, patience=8, **_LEARNS),
    "words": AutoencoderConfig(hidden_size=64, patience=8, **{**_LEARNS, **WORDS_OBJECTIVE}),
    "medium": AutoencoderConfig(hidden_size=128, epochs=30, **_LEARNS),
    "large": AutoencoderConfig(hidden_size=256, num_layers=2, epochs=40, dropout=0.1, **_LEARNS),
    "xlarge": AutoencoderConfig(
        hidden_size=512, num_layers=2, bidirectional=True, epochs=50, dropout=0.1, **_LEARNS
    ),
    "research": AutoencoderConfig(
        hidden_size=1024,
        num_layers=2,
        bidirectional=True,
        attention=True,
        decoder_hidden=1024,
        epochs=80,
        dropout=0.2,
        patience=10,
        **_LEARNS,
    ),
}


# What each preset is for and how long it takes (2 cores; the default corpus is Debian's
# fortunes songs-poems, 720 poems; benchmarks/RESULTS.md, "Poetry: baselines and presets").
PRESET_USES: dict[str, str] = {
    "tiny": "notebooks, tests and smoke runs; about 2 minutes on the default corpus, "
    "most of it fitting the word vectors",
    "small": "the default; the main job (`seqlab poetry`) on the default corpus",
    "words": "small's recurrent model without the linear path, trained for word recovery (the "
    "nearest word of each decoded vector) rather than token cosine: 2.1x the linear baseline's "
    "word recovery on poems.json, lower token cosine; about 2.5 minutes of one core there "
    "(1,235 poems, with the 50-d GloVe vectors and chunks of 30 tokens), a step costing "
    "about what small's does",
    "medium": "larger corpora; not timed here (a step costs about 4x small's, estimated from the sizes)",
    "large": "larger corpora; not timed here (a step costs about 30x small's, estimated)",
    "xlarge": "large corpora; not timed here (a step costs about 100x small's, estimated)",
    "research": "large corpora, with attention; not timed here (hours on 2 cores)",
}


def describe_preset(name: str) -> str:
    """One line saying what a preset is: sizes, epochs, use and expected time."""
    c = PRESETS[name]
    layers = f"{c.num_layers}-layer " if c.num_layers > 1 else ""
    parts = [
        f"{layers}{'bidirectional ' if c.bidirectional else ''}{c.cell.upper()} {c.hidden_size} -> "
        f"{c.bottleneck}-d code{' + linear path' if c.linear_path else ''}"
        f"{f' + {c.num_heads}-head attention' if c.attention else ''}",
        f"{c.embedding_dim}-d word vectors" if not c.embeddings else "given word vectors",
        f"chunks of {c.max_len} tokens",
        f"{c.epochs} epochs" + (f" (at least {c.min_steps} steps)" if c.min_steps else "")
        + f", early stop after {c.patience} without a better validation loss",
        f"lr {c.lr:g}",
    ]
    if c.vocab_loss_weight:
        parts.append(f"word softmax loss x{c.vocab_loss_weight:g}")
    return f"{name}: " + ", ".join(parts) + f"; {PRESET_USES[name]}"


def preset(name: str, **overrides: Any) -> AutoencoderConfig:
    """The named preset (see :func:`describe_preset`) with ``overrides`` applied."""
    return named_preset(PRESETS, name, overrides)
