"""Configuration of the next-vector predictor."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

CELLS = ("gru", "lstm", "transformer")
LR_SCHEDULES = ("warmup", "cosine", "constant")

# lr="auto": the original project's 1e-4 suited a corpus giving about this many optimizer
# steps; a run allowed fewer steps takes a rate larger by sqrt(REFERENCE_STEPS / steps),
# between AUTO_LR_RANGE.
REFERENCE_STEPS = 144_000
AUTO_LR_RANGE = (1e-4, 3e-3)
WARMUP_FRACTION = 0.05


@dataclass(frozen=True)
class VectorPredictorConfig:
    """Everything that defines a next-vector predictor run; any field can be overridden.

    Model: a ``cell`` (``"gru"``, ``"lstm"`` or a small causal ``"transformer"`` of
    ``num_layers`` blocks with ``num_heads`` heads) of ``hidden_size`` units reads up to
    ``context`` vectors and predicts a delta: ``next = normalize(last + delta)``.
    Loss on unit vectors: MSE + ``cosine_weight`` x cosine distance + ``infonce_weight``
    x InfoNCE over in-batch negatives at ``temperature``, with ``hard_negatives`` extra
    negatives per target mined from the training bank (cosine to the target in
    ``hard_negative_range``; 0 turns mining off).
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
    cosine_weight: float = 0.5
    infonce_weight: float = 0.2
    temperature: float = 0.05
    cross_segment_negatives: bool = True
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

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        for name in ("context", "hidden_size", "num_layers", "num_heads", "batch_size",
                     "segments_per_batch", "epochs", "encoder_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
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

    def with_overrides(self, **overrides: Any) -> VectorPredictorConfig:
        """A copy with some fields replaced; unknown names raise TypeError listing the known ones."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown vector predictor settings {unknown}; known: {sorted(known)}")
        for key in ("split", "hard_negative_range"):
            if key in overrides:
                overrides[key] = tuple(overrides[key])
        return replace(self, **overrides)

    def learning_rate(self, total_steps: int) -> float:
        """The peak learning rate of a run of ``total_steps`` optimizer steps: ``lr`` when
        it is a number; for ``"auto"``, ``1e-4 * sqrt(REFERENCE_STEPS / total_steps)``
        clipped to :data:`AUTO_LR_RANGE` (1e-3 for the ~1,400 steps of 40 epochs of the
        default corpus, 1e-4 from 144,000 steps on)."""
        if self.lr != "auto":
            return float(self.lr)
        low, high = AUTO_LR_RANGE
        return float(min(high, max(low, 1e-4 * math.sqrt(REFERENCE_STEPS / max(1, total_steps)))))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["split"], d["hard_negative_range"] = list(self.split), list(self.hard_negative_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VectorPredictorConfig:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "lr" in d and "lr_schedule" not in d:
            d["lr_schedule"] = "constant"  # a run saved before schedules trained at a constant rate
        return cls().with_overrides(**d)


PRESETS: dict[str, VectorPredictorConfig] = {
    # A GRU of 256 units over up to 100 vectors; minutes on 2 cores for the default corpus. Its
    # learning rate follows the optimizer steps the corpus allows, after a warmup; InfoNCE 0.2.
    "default": VectorPredictorConfig(),
    # the original project's settings: a constant 1e-4, InfoNCE weight 0.05
    "original": VectorPredictorConfig(lr=1e-4, lr_schedule="constant", infonce_weight=0.05),
}


def preset(name: str, **overrides: Any) -> VectorPredictorConfig:
    """The named preset with ``overrides`` applied (unknown names raise ValueError listing them)."""
    if name not in PRESETS:
        raise ValueError(f"unknown vector predictor preset {name!r}; choose one of {list(PRESETS)}")
    return PRESETS[name].with_overrides(**overrides)
