"""N-BEATS (Oreshkin et al., 2020): doubly residual stacks of fully connected blocks.

Each block maps its input x (B, L) through 4 fully connected ReLU layers to expansion
coefficients theta, and theta through a basis to a backcast (B, L) and a forecast (B, H).
The next block sees ``x - backcast`` and the model's forecast is the sum of the blocks'
forecasts. Bases:

* generic: learned linear maps theta -> backcast and theta -> forecast;
* trend: a polynomial ``sum_i theta_i t^i`` of small degree (2-3), t in [0, 1);
* seasonality: a Fourier series ``cos(2 pi i t), sin(2 pi i t)``, i < H/2.

The interpretable configuration is a trend stack then a seasonality stack, 3 blocks
each, the blocks of a stack sharing their weights. The model reads only the target
channels of the window; each target channel is forecast as its own univariate series.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from ... import functional as F
from ... import nn
from ...autograd import Tensor

BASES = ("generic", "trend", "seasonality")


def trend_basis(degree: int, length: int) -> np.ndarray:
    """(degree+1, length) rows ``t**i`` with ``t = arange(length) / length``."""
    t = np.arange(length, dtype=np.float64) / length
    return np.stack([t**i for i in range(degree + 1)]).astype(np.float32)


def seasonality_basis(harmonics: int, length: int) -> np.ndarray:
    """(2*harmonics, length) rows ``cos(2 pi i t)`` then ``sin(2 pi i t)``, i < harmonics."""
    t = np.arange(length, dtype=np.float64) / length
    i = np.arange(harmonics, dtype=np.float64)[:, None]
    return np.concatenate([np.cos(2 * np.pi * i * t), np.sin(2 * np.pi * i * t)]).astype(np.float32)


class NBeatsBlock(nn.Module):
    """One block: 4 Linear+ReLU layers of ``width``, then theta heads and a basis.

    Args:
        input_size, horizon: lengths L and H.
        width: units of the fully connected layers.
        basis: ``"generic"``, ``"trend"`` or ``"seasonality"``.
        theta_size: generic basis only, the size of theta.
        degree: trend basis polynomial degree.

    Shapes: x (B, L) -> (backcast (B, L), forecast (B, H)).
    """

    def __init__(
        self,
        input_size: int,
        horizon: int,
        width: int = 256,
        basis: str = "generic",
        theta_size: int = 32,
        degree: int = 3,
    ) -> None:
        super().__init__()
        if basis not in BASES:
            raise ValueError(f"NBeatsBlock: basis must be one of {BASES}, got {basis!r}")
        self.basis = basis
        self.fc = nn.Sequential(
            nn.Linear(input_size, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
        )
        if basis == "generic":
            self.theta_b = nn.Linear(width, theta_size, bias=False)
            self.theta_f = nn.Linear(width, theta_size, bias=False)
            self.backcast_basis = nn.Linear(theta_size, input_size)
            self.forecast_basis = nn.Linear(theta_size, horizon)
        else:
            if basis == "trend":
                if not 1 <= degree <= 4:
                    raise ValueError(f"NBeatsBlock: trend degree must be in 1..4, got {degree}")
                back, fore = trend_basis(degree, input_size), trend_basis(degree, horizon)
            else:
                harmonics = max(1, horizon // 2)
                back, fore = seasonality_basis(harmonics, input_size), seasonality_basis(harmonics, horizon)
            self.theta_b = nn.Linear(width, back.shape[0], bias=False)
            self.theta_f = nn.Linear(width, fore.shape[0], bias=False)
            # Fixed bases as Linear weights (out, theta): constants, never trained.
            self._back = Tensor(np.ascontiguousarray(back.T))
            self._fore = Tensor(np.ascontiguousarray(fore.T))

    def forward(self, x: Any) -> tuple[Tensor, Tensor]:
        h = self.fc(x)
        if self.basis == "generic":
            return self.backcast_basis(self.theta_b(h)), self.forecast_basis(self.theta_f(h))
        return F.linear(self.theta_b(h), self._back), F.linear(self.theta_f(h), self._fore)


class NBeats(nn.Module):
    """N-BEATS over the target channels of a window.

    Args:
        input_size, horizon: lookback L and horizon H.
        target_columns: indices of the target channels in the input (default: the last).
        stacks: one entry per stack: ``(basis, n_blocks, share_weights)``. Default: the
            interpretable configuration ``[("trend", 3, True), ("seasonality", 3, True)]``;
            see :func:`generic_stacks`.
        width: units of each block's fully connected layers (the paper: 512 generic,
            256 trend, 2048 seasonality; smaller here by default for the CPU).
        theta_size, degree: as :class:`NBeatsBlock`.
        level_shift: subtract each window's last value before the blocks and add it back
            to the forecast (keeps trending series in range; off = the paper's model).

    Shapes: input (B, L, C) -> (B, H, n_targets).
    """

    def __init__(
        self,
        input_size: int,
        horizon: int,
        target_columns: Sequence[int] = (-1,),
        stacks: Sequence[tuple[str, int, bool]] | None = None,
        width: int = 256,
        theta_size: int = 32,
        degree: int = 3,
        level_shift: bool = False,
    ) -> None:
        super().__init__()
        self.input_size, self.horizon = input_size, horizon
        self.level_shift = bool(level_shift)
        self.target_columns = [int(c) for c in target_columns]
        self.n_targets = len(self.target_columns)
        spec = list(stacks) if stacks is not None else [("trend", 3, True), ("seasonality", 3, True)]
        if not spec:
            raise ValueError("NBeats: stacks must not be empty")
        self.stack_spec = [(str(b), int(n), bool(s)) for b, n, s in spec]
        self.stacks = nn.Sequential()
        for basis, n_blocks, shared in self.stack_spec:
            if n_blocks < 1:
                raise ValueError(f"NBeats: a stack needs at least one block, got {n_blocks}")
            unique = 1 if shared else n_blocks
            self.stacks.append(
                nn.Sequential(
                    *[
                        NBeatsBlock(input_size, horizon, width, basis, theta_size, degree)
                        for _ in range(unique)
                    ]
                )
            )

    def _stack_uses(self) -> list[list[NBeatsBlock]]:
        """Per stack, its blocks in the order they run (a shared block once per use)."""
        uses = []
        for (_, n_blocks, shared), stack in zip(self.stack_spec, self.stacks):
            members = cast(list[NBeatsBlock], list(cast(nn.Sequential, stack)))
            uses.append(members[:1] * n_blocks if shared else members)
        return uses

    def blocks(self) -> list[NBeatsBlock]:
        """The blocks in the order they run (a shared block appears once per use)."""
        return [block for use in self._stack_uses() for block in use]

    def decompose(self, x: Any) -> list[Tensor]:
        """Each stack's forecast (B*n_targets, H); their sum (plus the level when
        ``level_shift``) is the model's forecast."""
        residual = self._series(x)
        parts: list[Tensor] = []
        for use in self._stack_uses():
            total: Tensor | None = None
            for block in use:
                back, fore = block(residual)
                residual = residual - back
                total = fore if total is None else total + fore
            assert total is not None  # every stack has at least one block
            parts.append(total)
        return parts

    def _series(self, x: Any) -> Tensor:
        t = x if isinstance(x, Tensor) else Tensor(x)
        if t.ndim != 3 or t.shape[1] != self.input_size:
            raise ValueError(f"NBeats: expected input (B, {self.input_size}, C), got shape {t.shape}")
        b = t.shape[0]
        cols = t[:, :, self.target_columns]  # (B, L, n_t)
        series = cols.transpose(0, 2, 1).reshape(b * self.n_targets, self.input_size)
        return series - self._level(t) if self.level_shift else series

    def _level(self, x: Tensor) -> np.ndarray:
        """(B*n_targets, 1) last value of each target series of the window."""
        return np.ascontiguousarray(x.data[:, -1, self.target_columns].reshape(-1, 1))

    def forward(self, x: Any) -> Tensor:
        t = x if isinstance(x, Tensor) else Tensor(x)
        parts = self.decompose(t)
        forecast = parts[0]
        for p in parts[1:]:
            forecast = forecast + p
        if self.level_shift:
            forecast = forecast + self._level(t)
        b = forecast.shape[0] // self.n_targets
        return forecast.reshape(b, self.n_targets, self.horizon).transpose(0, 2, 1)


def generic_stacks(n_stacks: int = 4, blocks_per_stack: int = 1) -> list[tuple[str, int, bool]]:
    """The generic configuration: ``n_stacks`` stacks of generic blocks, weights not shared
    (the paper uses 30 stacks of 1 block, width 512)."""
    return [("generic", blocks_per_stack, False)] * n_stacks


def interpretable_stacks(blocks: int = 3) -> list[tuple[str, int, bool]]:
    """The interpretable configuration: a trend stack then a seasonality stack, ``blocks``
    blocks each with weights shared within the stack."""
    return [("trend", blocks, True), ("seasonality", blocks, True)]
