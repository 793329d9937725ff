"""Parameter initialisers (in place), drawing from the seeded ``seqlab.random`` generator.

Names and formulas follow ``torch.nn.init``.
"""

from __future__ import annotations

import math

import numpy as np

from ..random import generator
from .parameter import Parameter


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 2:
        raise ValueError(f"fan in/out need a tensor with at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def uniform_(p: Parameter, low: float = 0.0, high: float = 1.0) -> Parameter:
    """Fills p with U(low, high)."""
    p.data[...] = generator().uniform(low, high, size=p.shape).astype(np.float32)
    return p


def normal_(p: Parameter, mean: float = 0.0, std: float = 1.0) -> Parameter:
    """Fills p with N(mean, std^2)."""
    p.data[...] = generator().normal(mean, std, size=p.shape).astype(np.float32)
    return p


def zeros_(p: Parameter) -> Parameter:
    p.data[...] = 0.0
    return p


def constant_(p: Parameter, value: float) -> Parameter:
    p.data[...] = value
    return p


def xavier_uniform_(p: Parameter, gain: float = 1.0) -> Parameter:
    """Glorot uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(p.shape)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(p, -a, a)


def kaiming_uniform_(p: Parameter, a: float = math.sqrt(5.0)) -> Parameter:
    """He uniform for leaky-ReLU slope ``a`` (PyTorch's default for Linear weights)."""
    fan_in, _ = _fans(p.shape)
    gain = math.sqrt(2.0 / (1.0 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in)
    return uniform_(p, -bound, bound)


def orthogonal_(p: Parameter, gain: float = 1.0) -> Parameter:
    """A (semi-)orthogonal matrix from the QR decomposition of a Gaussian matrix.

    For stacked gate matrices (``weight_hh`` of shape (G*H, H)) each (H, H) block is
    made orthogonal separately, so every gate's recurrent map is norm-preserving.
    """
    rows, cols = p.shape[0], int(np.prod(p.shape[1:]))
    blocks = rows // cols if rows > cols and rows % cols == 0 else 1
    block_rows = rows // blocks
    out = np.empty((rows, cols), dtype=np.float32)
    for b in range(blocks):
        flat = generator().normal(0.0, 1.0, size=(block_rows, cols))
        transpose = block_rows < cols
        if transpose:
            flat = flat.T
        q, r = np.linalg.qr(flat)
        q *= np.sign(np.diag(r))
        if transpose:
            q = q.T
        out[b * block_rows : (b + 1) * block_rows] = gain * q
    p.data[...] = out.reshape(p.shape)
    return p
