"""Stochastic gradient descent, as ``torch.optim.SGD``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import _core
from .optimizer import Optimizer, check_nonnegative


class SGD(Optimizer):
    """SGD with optional momentum, dampening, Nesterov momentum and L2 weight decay.

    Update, per torch.optim.SGD: ``g = grad + weight_decay * p``; with momentum,
    ``buf = g`` on a parameter's first step, else ``momentum * buf + (1 - dampening) * g``,
    then ``g = g + momentum * buf`` (nesterov) or ``g = buf``; ``p -= lr * g``
    (``maximize`` negates ``grad``).
    """

    state_names = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        group["momentum"] = check_nonnegative("momentum", group["momentum"])
        group["weight_decay"] = check_nonnegative("weight_decay", group["weight_decay"])
        group["dampening"] = float(group["dampening"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov: requires momentum > 0 and dampening == 0")

    def _has_buffer(self) -> np.ndarray:
        flags = self.flags.get("momentum_buffer")
        if flags is None:
            flags = np.zeros(self.steps.shape, dtype=bool)
            self.flags["momentum_buffer"] = flags
        return flags

    def _range_key(self, i: int) -> tuple[Any, ...]:
        return (bool(self._has_buffer()[i]),)

    def _update_range(
        self, group: dict[str, Any], first: int, last: int, begin: int, end: int, step: int
    ) -> None:
        mom = group["momentum"] != 0.0
        has = self._has_buffer()
        buf = self._buffer("momentum_buffer")[begin:end] if mom else None
        _core.sgd_step(
            self.flat.data[begin:end],
            self.flat.grad[begin:end],
            buf,
            group["lr"],
            group["momentum"],
            group["dampening"],
            group["weight_decay"],
            bool(group["nesterov"]),
            bool(group["maximize"]),
            not bool(has[first]),
        )
        if mom:
            has[first:last] = True
