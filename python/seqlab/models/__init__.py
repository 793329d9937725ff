"""The recipes' models: nn.Modules, their config dataclasses and presets."""

from . import forecast

__all__ = ["forecast"]
