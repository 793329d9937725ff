"""Streaming next-vector prediction: one new vector in, one prediction out."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from ...autograd import no_grad
from .baselines import unit_rows
from .model import NextVectorModel


class VectorStream:
    """Keeps a predictor's state across calls of :meth:`step`.

    A recurrent model carries its hidden state (each step costs one cell update,
    whatever the history); the transformer keeps the last ``context`` vectors and reruns
    over them.

    Example::

        stream = predictor.stream()
        for v in vectors:                 # (D,) each
            guess = stream.step(v)        # (D,) unit prediction of the vector after v
    """

    def __init__(self, model: NextVectorModel, predict_window: Any) -> None:
        self.model = model
        self._predict_window = predict_window
        self.reset()

    def reset(self) -> None:
        """Forgets the history."""
        self._state: Any = None
        self._window: deque[np.ndarray] = deque(maxlen=self.model.config.context)
        self.steps = 0

    def step(self, vector: Any) -> np.ndarray:
        """Adds ``vector`` (D,) to the history; returns the ``(D,)`` unit prediction of the next."""
        v = np.asarray(vector, dtype=np.float32)
        if v.shape != (self.model.dim,):
            raise ValueError(f"step(): expected a vector of shape ({self.model.dim},), got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError(f"step(): the vector at stream position {self.steps} holds NaN or infinity")
        x = unit_rows(v[None])
        self.steps += 1
        if self.model.config.cell == "transformer":
            self._window.append(x[0])
            return self._predict_window(np.stack(self._window))
        was_training = self.model.training
        if was_training:  # switching modes walks every submodule: not once per step
            self.model.eval()
        try:
            with no_grad():
                y, self._state = self.model.step(x, self._state)
        finally:
            if was_training:
                self.model.train()
        return unit_rows(y)[0]
