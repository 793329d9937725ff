"""The code optimizer's model: config and presets, the seq2seq pointer-generator model,
its incremental decoding session and the decoding strategies."""

from .config import PRESETS, Seq2SeqConfig, preset
from .search import MODES, Hypothesis, beam_search, decode, greedy, hybrid, length_penalty, sample
from .seq2seq import CodeSeq2Seq, DecoderSession

__all__ = [
    "PRESETS",
    "CodeSeq2Seq",
    "DecoderSession",
    "MODES",
    "Hypothesis",
    "Seq2SeqConfig",
    "beam_search",
    "decode",
    "greedy",
    "hybrid",
    "length_penalty",
    "preset",
    "sample",
]
