"""The code optimizer: config and presets, the seq2seq pointer-generator model, its
incremental decoding session and decoding strategies, and the baselines and evaluation
that judge it."""

from .baselines import NearestBody, NGramCompleter, NGramModel, NGramReranker, unchanged
from .config import PRESETS, Seq2SeqConfig, preset
from .evaluate import baseline_scores, evaluate_outputs, real_edit_scores, task_scores
from .search import (
    MODES,
    Hypothesis,
    beam_search,
    decode,
    greedy,
    hybrid,
    length_penalty,
    sample,
    score_targets,
)
from .seq2seq import CodeSeq2Seq, DecoderSession

__all__ = [
    "MODES",
    "PRESETS",
    "CodeSeq2Seq",
    "DecoderSession",
    "Hypothesis",
    "NGramCompleter",
    "NGramModel",
    "NGramReranker",
    "NearestBody",
    "Seq2SeqConfig",
    "baseline_scores",
    "beam_search",
    "decode",
    "evaluate_outputs",
    "greedy",
    "hybrid",
    "length_penalty",
    "preset",
    "real_edit_scores",
    "sample",
    "score_targets",
    "task_scores",
    "unchanged",
]
