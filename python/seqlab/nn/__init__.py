"""Layers mirroring ``torch.nn``: same constructor arguments, shapes and parameter names."""

from .module import Module
from .parameter import Parameter

__all__ = ["Module", "Parameter"]
