"""The recipes' models: nn.Modules, their config dataclasses and presets."""

from . import code, code_lm, forecast, vectors

__all__ = ["code", "code_lm", "forecast", "vectors"]
