"""Layers mirroring ``torch.nn``: same constructor arguments, shapes and parameter names."""

from . import init, utils
from .activation import GELU, ReLU, Sigmoid, Softmax, Tanh
from .attention import MultiheadAttention
from .container import Sequential
from .conv import CausalConv1d, Conv1d
from .decoder import DecoderAttention, RecurrentDecoder
from .dropout import Dropout
from .embedding import Embedding
from .linear import Linear
from .module import Module
from .normalization import LayerNorm
from .parameter import Parameter
from .pointer_generator import PointerGeneratorDecoder
from .recurrent import GRU, LSTM, RNN
from .transformer import GPTBlock, TransformerDecoderBlock, TransformerEncoderLayer

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
    "GPTBlock",
    "LayerNorm",
    "Linear",
    "Module",
    "MultiheadAttention",
    "Parameter",
    "PointerGeneratorDecoder",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "TransformerDecoderBlock",
    "TransformerEncoderLayer",
    "init",
    "utils",
]
