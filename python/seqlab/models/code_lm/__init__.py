"""The code language model: GPT decoder, config and presets, KV-cached generation,
the n-gram baseline and the compile-rate check."""

from .config import PRESETS, CodeLMConfig, preset_config
from .fused_decode import FusedDecoder
from .generation import generate_ids
from .model import GPT, KVCache
from .ngram import KneserNeyNgram

__all__ = [
    "GPT",
    "PRESETS",
    "CodeLMConfig",
    "FusedDecoder",
    "KVCache",
    "KneserNeyNgram",
    "generate_ids",
    "preset_config",
]
