"""Gradient monitor: per-layer gradient norms every step, warnings, adaptive clipping."""

from __future__ import annotations

import math
import warnings
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from .callback import Callback

if TYPE_CHECKING:
    from .trainer import Trainer


class GradientWarning(UserWarning):
    """Vanishing or exploding gradients."""


class GradientMonitor(Callback):
    """Records the L2 norm of every parameter's gradient at every step.

    Each step's norms go to ``trainer.step_history`` (``grad_norm`` and
    ``layer_grad_norms``); each epoch's logs get the mean and max total norm and the
    counts of vanishing/exploding steps. A layer whose norm is below ``vanishing``
    or above ``exploding`` raises a :class:`GradientWarning` (once per layer and
    kind per epoch) and is counted.

    With ``adaptive_clip`` the gradients are scaled down when the total norm
    exceeds ``adaptive_clip`` times the median of the last ``window`` norms.
    """

    def __init__(
        self,
        vanishing: float = 1e-7,
        exploding: float = 100.0,
        adaptive_clip: float | None = None,
        window: int = 100,
        record_layers: bool = True,
    ) -> None:
        if adaptive_clip is not None and adaptive_clip <= 1.0:
            raise ValueError(f"GradientMonitor: adaptive_clip must be > 1, got {adaptive_clip}")
        self.vanishing, self.exploding = float(vanishing), float(exploding)
        self.adaptive_clip = adaptive_clip
        self.record_layers = record_layers
        self.recent: deque[float] = deque(maxlen=int(window))
        self._epoch_norms: list[float] = []
        self._counts = {"vanishing": 0, "exploding": 0, "clipped": 0}
        self._warned: set[tuple[str, str]] = set()

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        self._epoch_norms = []
        self._counts = {"vanishing": 0, "exploding": 0, "clipped": 0}
        self._warned = set()

    def before_step(self, trainer: Trainer, loss: float) -> bool:
        if not math.isfinite(loss):
            return True  # no backward ran; the NaN guard handles the step
        layer_norms: dict[str, float] = {}
        total_sq = 0.0
        for name, p in trainer.model.named_parameters():
            if p.grad is None:
                continue
            g = p.grad.ravel()
            sq = float(np.dot(g, g))
            total_sq += sq
            layer_norms[name] = math.sqrt(sq)
        total = math.sqrt(total_sq)
        if not math.isfinite(total):
            return True  # the NaN guard handles non-finite gradients
        vanish = [n for n, v in layer_norms.items() if v < self.vanishing]
        explode = [n for n, v in layer_norms.items() if v > self.exploding]
        for kind, names in (("vanishing", vanish), ("exploding", explode)):
            if names:
                self._counts[kind] += 1
                new = [n for n in names if (n, kind) not in self._warned]
                if new:
                    self._warned.update((n, kind) for n in new)
                    warnings.warn(
                        f"{kind} gradients at step {trainer.global_step + 1} in "
                        f"{', '.join(new[:5])}{' ...' if len(new) > 5 else ''}",
                        GradientWarning,
                        stacklevel=2,
                    )
        if self.adaptive_clip is not None and len(self.recent) >= 10:
            limit = self.adaptive_clip * float(np.median(self.recent))
            if total > limit > 0:
                scale = limit / total
                for p in trainer.model.parameters():
                    if p.grad is not None:
                        p.grad *= scale
                self._counts["clipped"] += 1
        self.recent.append(total)
        self._epoch_norms.append(total)
        record: dict[str, Any] = {"grad_norm": total}
        if self.record_layers:
            record["layer_grad_norms"] = layer_norms
        trainer.current_step_record.update(record)
        return True

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self._epoch_norms:
            logs["grad_norm_mean"] = float(np.mean(self._epoch_norms))
            logs["grad_norm_max"] = float(np.max(self._epoch_norms))
        logs["vanishing_steps"] = self._counts["vanishing"]
        logs["exploding_steps"] = self._counts["exploding"]
        if self.adaptive_clip is not None:
            logs["adaptive_clipped_steps"] = self._counts["clipped"]

    def state_dict(self) -> dict[str, Any]:
        return {"recent": np.asarray(self.recent, dtype=np.float64)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent.clear()
        self.recent.extend(float(v) for v in np.asarray(state.get("recent", [])).ravel())
