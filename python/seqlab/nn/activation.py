"""Activation modules, mirroring ``torch.nn.ReLU``, ``Tanh``, ``Sigmoid``, ``GELU``, ``Softmax``.

Each maps any shape to the same shape.
"""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..autograd import Tensor
from .module import Module


class ReLU(Module):
    """``max(x, 0)`` elementwise."""

    def forward(self, input: Any) -> Tensor:
        return F.relu(input)


class Tanh(Module):
    """``tanh(x)`` elementwise."""

    def forward(self, input: Any) -> Tensor:
        return F.tanh(input)


class Sigmoid(Module):
    """``1 / (1 + exp(-x))`` elementwise."""

    def forward(self, input: Any) -> Tensor:
        return F.sigmoid(input)


class GELU(Module):
    """Gaussian error linear unit; ``approximate`` is ``'none'`` (erf) or ``'tanh'``."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input: Any) -> Tensor:
        return F.gelu(input, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softmax(Module):
    """Softmax along ``dim`` (default: the last axis)."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Any) -> Tensor:
        return F.softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
