"""The recipes' models: nn.Modules, their config dataclasses and presets."""

from . import code, forecast, vectors

__all__ = ["code", "forecast", "vectors"]
