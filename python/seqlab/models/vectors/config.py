"""Configuration of the next-vector predictor."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..presets import PresetConfig, named_preset

CELLS = ("gru", "lstm", "transformer")
LR_SCHEDULES = ("warmup", "cosine", "constant")

# lr="auto": the original project's 1e-4 suited a corpus giving about this many optimizer
# steps; a run allowed fewer steps takes a rate larger by sqrt(REFERENCE_STEPS / steps),
# between AUTO_LR_RANGE.
REFERENCE_STEPS = 144_000
AUTO_LR_RANGE = (1e-4, 3e-3)
WARMUP_FRACTION = 0.05


@dataclass(frozen=True)
class VectorPredictorConfig(PresetConfig):
    """Everything that defines a next-vector predictor run; any field can be overridden.

    Model: a ``cell`` (``"gru"``, ``"lstm"`` or a small causal ``"transformer"`` of
    ``num_layers`` blocks with ``num_heads`` heads) of ``hidden_size`` units reads up to
    ``context`` vectors and predicts a delta: ``next = normalize(last + a x previous +
    b x context mean + delta)``. With ``mix`` the weights ``a``, ``b`` are chosen on the
    validation chains before training (:func:`~seqlab.models.vectors.mix.choose_mix`;
    copy-last, ``(0, 0)``, is one of the candidates); without, they stay 0. The untrained
    model is scored on validation as epoch 0, and a trained epoch replaces it only by
    beating its Hit@5.
    Loss on unit vectors: MSE + ``cosine_weight`` x cosine distance + ``infonce_weight``
    x InfoNCE over in-batch negatives at ``temperature``, with ``hard_negatives`` extra
    negatives per target mined from the training bank (cosine to the target in
    ``hard_negative_range``; 0 turns mining off); with ``bank_negatives`` InfoNCE instead
    ranks each target among every vector of the training chains (the window's own
    vectors included), as the evaluation ranks it among a bank.
    Training: AdamW (``lr``, ``weight_decay``), micro-batches of ``segments_per_batch``
    chain segments accumulated to about ``batch_size`` windows per step, gradient
    norm clipped to ``clip_grad_norm``, at most ``epochs`` epochs, early stopping on
    validation Hit@5 after ``patience`` epochs without a better one. ``lr="auto"``
    follows the optimizer steps the corpus allows (``epochs`` x steps per epoch, see
    :meth:`learning_rate`); ``lr_schedule="warmup"`` warms up linearly over the first 5%
    of those steps and then keeps ``lr``, ``"cosine"`` warms up the same way and decays to
    a tenth of ``lr`` by the last step, ``"constant"`` keeps ``lr`` from the first step.
    :data:`PRESETS` names whole configurations (``"original"``: the original project's
    constant 1e-4).
    Data: quality gates (``min_length``, ``coherence``, ``dedupe``), chains split by
    ``split`` fractions; text is cut into ``unit`` chunks (``"paragraph"`` or
    ``"sentence"``) and embedded by ``encoder`` (``"tfidf"``, ``encoder_dim``-d, fitted
    on the training chains only; or ``"minilm"``).
    """

    context: int = 100
    cell: str = "gru"
    hidden_size: int = 256
    num_layers: int = 1
    num_heads: int = 4
    dropout: float = 0.0
    mix: bool = True
    cosine_weight: float = 0.5
    infonce_weight: float = 0.2
    temperature: float = 0.05
    cross_segment_negatives: bool = True
    bank_negatives: bool = False
    hard_negatives: int = 0
    hard_negative_range: tuple[float, float] = (0.75, 0.9)
    lr: float | str = "auto"
    lr_schedule: str = "warmup"
    weight_decay: float = 1e-4
    batch_size: int = 256
    segments_per_batch: int = 4
    clip_grad_norm: float = 1.0
    epochs: int = 40
    patience: int = 3
    min_length: int = 7
    coherence: float = 0.0
    dedupe: bool = True
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    encoder: str = "tfidf"
    encoder_dim: int = 256
    unit: str = "paragraph"
    seed: int = 0

    settings_name: ClassVar[str] = "vector predictor"
    tuple_fields: ClassVar[tuple[str, ...]] = ("split", "hard_negative_range")

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        self.check_positive_ints(("context", "hidden_size", "num_layers", "num_heads", "batch_size",
                                  "segments_per_batch", "epochs", "encoder_dim"))
        if self.cell == "transformer" and self.hidden_size % self.num_heads:
            raise ValueError(f"the transformer needs hidden_size ({self.hidden_size}) divisible by "
                             f"num_heads ({self.num_heads})")
        for name in ("cosine_weight", "infonce_weight", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.lr != "auto" and (isinstance(self.lr, (str, bool)) or not self.lr > 0):
            raise ValueError(f"lr must be 'auto' or a number > 0, got {self.lr!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.patience < 0 or self.hard_negatives < 0:
            raise ValueError("patience and hard_negatives must be >= 0")
        low, high = self.hard_negative_range
        if not -1.0 <= low < high <= 1.0:
            raise ValueError(f"hard_negative_range: expected -1 <= low < high <= 1, got {(low, high)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.unit not in ("paragraph", "sentence"):
            raise ValueError(f"unit must be 'paragraph' or 'sentence', got {self.unit!r}")

    def learning_rate(self, total_steps: int) -> float:
        """The peak learning rate of a run of ``total_steps`` optimizer steps: ``lr`` when
        it is a number; for ``"auto"``, ``1e-4 * sqrt(REFERENCE_STEPS / total_steps)``
        clipped to :data:`AUTO_LR_RANGE` (1e-3 for the ~1,400 steps of 40 epochs of the
        default corpus, 1e-4 from 144,000 steps on)."""
        if self.lr != "auto":
            return float(self.lr)
        low, high = AUTO_LR_RANGE
        return float(min(high, max(low, 1e-4 * math.sqrt(REFERENCE_STEPS / max(1, total_steps)))))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VectorPredictorConfig:
        if "lr" in d and "lr_schedule" not in d:
            d = {**d, "lr_schedule": "constant"}  # a run saved before schedules trained at a constant rate
        if "mix" not in d:
            d = {**d, "mix": False}  # a run saved before the mix predicted last + delta
        return super().from_dict(d)


PRESETS: dict[str, VectorPredictorConfig] = {
    # A GRU of 256 units over up to 100 vectors; minutes on 2 cores for the default corpus. Its
    # learning rate follows the optimizer steps the corpus allows, after a warmup; InfoNCE 0.2.
    "default": VectorPredictorConfig(),
    # the original project's settings: a constant 1e-4, InfoNCE weight 0.05, no mix
    "original": VectorPredictorConfig(lr=1e-4, lr_schedule="constant", infonce_weight=0.05, mix=False),
}


def preset(name: str, **overrides: Any) -> VectorPredictorConfig:
    """The named preset with ``overrides`` applied (unknown names raise ValueError listing them)."""
    return named_preset(PRESETS, name, overrides, "vector predictor")
