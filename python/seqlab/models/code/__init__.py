"""The code optimizer's model: config and presets, the seq2seq pointer-generator model."""

from .config import PRESETS, Seq2SeqConfig, preset
from .seq2seq import CodeSeq2Seq

__all__ = ["PRESETS", "CodeSeq2Seq", "Seq2SeqConfig", "preset"]
