"""Dropout, mirroring ``torch.nn.Dropout``."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..autograd import Tensor
from .module import Module


class Dropout(Module):
    """Inverted dropout with probability ``p`` in training mode, identity in eval mode.

    Shapes: any -> same shape. The mask is drawn from ``seqlab.random.generator()``.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)

    def forward(self, input: Any) -> Tensor:
        return F.dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
