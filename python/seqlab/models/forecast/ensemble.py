"""Median ensemble of forecasters with different lookbacks (N-BEATS' ensembling)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ... import nn
from ...autograd import Tensor, no_grad


class MedianEnsemble(nn.Module):
    """Combines trained members by the elementwise median of their forecasts.

    Each member ``i`` reads the last ``lookbacks[i]`` steps of the window, so members
    trained on different lookbacks (and losses and seeds, as in the N-BEATS paper) share
    one input. Inference only: the median is not differentiated.

    Shapes: input (B, L, C) with L >= max(lookbacks) -> (B, H, n_targets).
    """

    def __init__(self, members: Sequence[nn.Module], lookbacks: Sequence[int]) -> None:
        super().__init__()
        if not members or len(members) != len(lookbacks):
            raise ValueError(
                f"MedianEnsemble: need one lookback per member, got {len(members)} members "
                f"and {len(lookbacks)} lookbacks"
            )
        self.members = nn.Sequential(*members)
        self.lookbacks = [int(v) for v in lookbacks]

    def member_forecasts(self, x: Any) -> np.ndarray:
        """(n_members, B, H, n_targets) forecasts of every member."""
        data = x.data if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
        if data.ndim != 3 or data.shape[1] < max(self.lookbacks):
            raise ValueError(
                f"MedianEnsemble: expected input (B, >= {max(self.lookbacks)}, C), got {data.shape}"
            )
        with no_grad():
            outs = [
                m(np.ascontiguousarray(data[:, -lb:])).data for m, lb in zip(self.members, self.lookbacks)
            ]
        return np.stack(outs)

    def forward(self, x: Any) -> Tensor:
        return Tensor(np.median(self.member_forecasts(x), axis=0).astype(np.float32))
