"""The recipes' models: nn.Modules, their config dataclasses and presets."""

from . import code_lm, forecast, vectors

__all__ = ["code_lm", "forecast", "vectors"]
