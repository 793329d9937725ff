"""Layers mirroring ``torch.nn``: same constructor arguments, shapes and parameter names."""

from . import init, utils
from .activation import GELU, ReLU, Sigmoid, Softmax, Tanh
from .container import Sequential
from .conv import CausalConv1d, Conv1d
from .decoder import DecoderAttention, RecurrentDecoder
from .dropout import Dropout
from .embedding import Embedding
from .linear import Linear
from .module import Module
from .parameter import Parameter
from .recurrent import GRU, LSTM, RNN

__all__ = [
    "GELU",
    "GRU",
    "CausalConv1d",
    "Conv1d",
    "LSTM",
    "RNN",
    "RecurrentDecoder",
    "DecoderAttention",
    "Dropout",
    "Embedding",
    "Linear",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "init",
    "utils",
]
