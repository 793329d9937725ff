"""Adam, as ``torch.optim.Adam``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import _core
from .optimizer import Optimizer, check_nonnegative


class Adam(Optimizer):
    """Adam with L2 weight decay added to the gradient (``weight_decay``) and optional AMSGrad.

    Update, per torch.optim.Adam (float32, single-tensor path): ``g = grad + wd * p``;
    ``m = lerp(m, g, 1 - beta1)``; ``v = beta2 v + (1 - beta2) g^2``;
    ``p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``, with
    ``v`` replaced by its running maximum under ``amsgrad``.
    """

    state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    decoupled_weight_decay = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        betas = group["betas"]
        if len(betas) != 2:
            raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        for i, b in enumerate(betas):
            if not 0.0 <= float(b) < 1.0:
                raise ValueError(f"betas: beta{i + 1} must be in [0, 1), got {b}")
        group["betas"] = (float(betas[0]), float(betas[1]))
        group["eps"] = check_nonnegative("eps", group["eps"])
        group["weight_decay"] = check_nonnegative("weight_decay", group["weight_decay"])

    def _update_range(
        self, group: dict[str, Any], first: int, last: int, begin: int, end: int, step: int
    ) -> None:
        amsgrad = bool(group["amsgrad"])
        vmax = self._buffer("max_exp_avg_sq")[begin:end] if amsgrad else None
        _core.adam_step(
            self.flat.data[begin:end],
            self.flat.grad[begin:end],
            self._buffer("exp_avg")[begin:end],
            self._buffer("exp_avg_sq")[begin:end],
            vmax,
            step,
            group["lr"],
            group["betas"][0],
            group["betas"][1],
            group["eps"],
            group["weight_decay"],
            amsgrad,
            self.decoupled_weight_decay,
            bool(group["maximize"]),
        )
