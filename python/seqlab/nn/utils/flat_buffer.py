"""One contiguous float32 buffer for many parameters and one for their gradients.

Optimizers update every parameter in one SIMD pass over these buffers (as llm.c does).
Each parameter's ``.data`` and ``.grad`` become views into them, so kernels that add
gradients in place and code that writes ``p.data[...] = v`` keep working unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ...autograd import Tensor


class FlatParameters:
    """Parameters packed into ``data`` (n,) and their gradients into ``grad`` (n,).

    Attributes:
        params: the parameters, in packing order.
        offsets: start of each parameter in the buffers.
        data, grad: the flat float32 buffers.
        data_views, grad_views: each parameter's (shaped) view into ``data``/``grad``.
    """

    def __init__(self, params: list[Tensor]) -> None:
        self.params = params
        sizes = [int(p.data.size) for p in params]
        self.offsets = [0, *np.cumsum(sizes).tolist()][:-1] if params else []
        self.sizes = sizes
        total = int(sum(sizes))
        self.data = np.empty(total, dtype=np.float32)
        self.grad = np.zeros(total, dtype=np.float32)
        self.data_views: list[np.ndarray] = []
        self.grad_views: list[np.ndarray] = []
        for p, off, n in zip(params, self.offsets, sizes, strict=True):
            dv = self.data[off : off + n].reshape(p.shape)
            gv = self.grad[off : off + n].reshape(p.shape)
            dv[...] = p.data
            p.data = dv
            if p.grad is not None:
                gv[...] = _checked_grad(p, p.grad, len(self.data_views))
                p.grad = gv
            self.data_views.append(dv)
            self.grad_views.append(gv)

    def __len__(self) -> int:
        return len(self.params)

    def sync(self) -> list[bool]:
        """Re-attaches parameters whose ``.data`` or ``.grad`` was rebound to a new array
        (values are copied into the buffers) and returns, per parameter, whether it has a
        gradient (``p.grad is not None``), as torch optimizers skip those without.
        """
        active: list[bool] = []
        for i, p in enumerate(self.params):
            dv = self.data_views[i]
            if p.data is not dv:
                if p.data.shape != dv.shape:
                    raise ValueError(
                        f"parameter {i}: data was rebound to shape {p.data.shape}, "
                        f"expected {dv.shape}"
                    )
                dv[...] = p.data
                p.data = dv
            g = p.grad
            if g is None:
                active.append(False)
                continue
            gv = self.grad_views[i]
            if g is not gv:
                gv[...] = _checked_grad(p, g, i)
                p.grad = gv
            active.append(True)
        return active

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zeroes the gradient buffer in place (or sets every ``p.grad`` to None)."""
        self.grad.fill(0.0)
        for p, gv in zip(self.params, self.grad_views, strict=True):
            p.grad = None if set_to_none else gv


def _checked_grad(p: Tensor, g: object, index: int) -> np.ndarray:
    arr = np.asarray(g)
    if arr.shape != p.shape:
        raise ValueError(f"parameter {index}: grad has shape {arr.shape}, expected {p.shape}")
    if arr.dtype.kind != "f":
        raise TypeError(f"parameter {index}: grad has dtype {arr.dtype}, expected float32")
    return arr


def flatten_parameters(params: Iterable[Tensor]) -> FlatParameters:
    """Packs ``params`` into one contiguous float32 data buffer and one gradient buffer.

    Values are copied; afterwards each ``p.data`` (and ``p.grad`` when it was set) is a
    view of shape ``p.shape`` into the buffers. Gradients that are None stay None.

    Raises:
        TypeError: an entry is not a float32 Tensor that requires grad.
        ValueError: a parameter appears twice.
    """
    plist = list(params)
    seen: set[int] = set()
    for i, p in enumerate(plist):
        if not isinstance(p, Tensor):
            raise TypeError(f"params[{i}]: expected a Parameter, got {type(p).__name__}")
        if p.data.dtype != np.float32 or not p.requires_grad:
            raise TypeError(
                f"params[{i}]: expected a float32 tensor with requires_grad=True, got dtype "
                f"{p.data.dtype}, requires_grad={p.requires_grad}"
            )
        if not p.is_leaf:
            raise ValueError(f"params[{i}]: is not a leaf tensor (it was computed by an operation)")
        if id(p) in seen:
            raise ValueError(f"params[{i}]: the same parameter appears more than once")
        seen.add(id(p))
    return FlatParameters(plist)
