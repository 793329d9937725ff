"""Parameter: a float32 leaf tensor that a Module registers and optimizers update."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Tensor


class Parameter(Tensor):
    """A trainable float32 tensor (``requires_grad=True``) owned by a Module.

    Its ``data`` may be re-pointed by an optimizer into a view of one flat buffer
    holding every parameter (see ``seqlab.nn.utils.flatten_parameters``); code that
    changes values in place (``p.data[...] = v``) keeps working either way.
    """

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        arr = np.array(data, dtype=np.float32, copy=True)
        super().__init__(arr, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape})"
