"""The recipes' models: nn.Modules, their config dataclasses and presets."""

from . import forecast, vectors

__all__ = ["forecast", "vectors"]
