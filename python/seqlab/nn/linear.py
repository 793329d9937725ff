"""Linear: ``y = x W^T + b``, mirroring ``torch.nn.Linear``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from . import init
from .module import Module
from .parameter import Parameter


class Linear(Module):
    """Affine map over the last axis.

    Args:
        in_features: size of each input row.
        out_features: size of each output row.
        bias: whether to learn an additive bias.

    Shapes: input (*, in_features) -> (*, out_features). Parameters ``weight``
    (out_features, in_features) and ``bias`` (out_features,), initialised as torch does:
    kaiming_uniform(a=sqrt(5)) and U(-1/sqrt(in_features), 1/sqrt(in_features)).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"Linear: {name} must be a non-negative int, got {v!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(np.zeros((out_features, in_features), dtype=np.float32))
        self.bias: Parameter | None
        if bias:
            self.bias = Parameter(np.zeros((out_features,), dtype=np.float32))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draws the parameters with torch's default initialisation."""
        if self.in_features > 0 and self.out_features > 0:
            init.kaiming_uniform_(self.weight, a=math.sqrt(5.0))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Any) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )
