"""LayerNorm, mirroring ``torch.nn.LayerNorm``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from .module import Module
from .parameter import Parameter


class LayerNorm(Module):
    """Normalises over the trailing ``normalized_shape`` axes, then scales and shifts.

    Args:
        normalized_shape: size (or sizes) of the trailing axes normalised together.
        eps: added to the variance.
        elementwise_affine: learn ``weight`` (ones) and ``bias`` (zeros) of ``normalized_shape``.
        bias: learn the bias (with ``elementwise_affine``).

    Shapes: input (*, *normalized_shape) -> same shape.
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if not ns or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in ns):
            raise ValueError(f"LayerNorm: normalized_shape must be positive ints, got {normalized_shape!r}")
        if not eps >= 0.0:
            raise ValueError(f"LayerNorm: eps must be >= 0, got {eps!r}")
        self.normalized_shape = ns
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        self.weight: Parameter | None
        self.bias: Parameter | None
        if elementwise_affine:
            self.weight = Parameter(np.ones(ns, dtype=np.float32))
        else:
            self.register_parameter("weight", None)
        if elementwise_affine and bias:
            self.bias = Parameter(np.zeros(ns, dtype=np.float32))
        else:
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        """Weight to ones, bias to zeros."""
        if self.weight is not None:
            self.weight.data[...] = 1.0
        if self.bias is not None:
            self.bias.data[...] = 0.0

    def forward(self, input: Any) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
