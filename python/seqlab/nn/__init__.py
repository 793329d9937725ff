"""Layers mirroring ``torch.nn``: same constructor arguments, shapes and parameter names."""

from .module import Module
from .parameter import Parameter
from .recurrent import GRU, LSTM, RNN

__all__ = ["GRU", "LSTM", "Module", "Parameter", "RNN"]
