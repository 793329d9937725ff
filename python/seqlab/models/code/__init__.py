"""The code optimizer: config and presets, the seq2seq pointer-generator model, its
incremental decoding session and decoding strategies, the re-ranking of candidates by a
product of the model and an n-gram expert, and the baselines and evaluation that judge it."""

from .baselines import NearestBody, NGramCompleter, NGramModel, NGramReranker, unchanged
from .config import PRESETS, Seq2SeqConfig, preset
from .evaluate import baseline_scores, evaluate_outputs, real_edit_scores, task_scores
from .rerank import Candidate, Reranking, choose_reranking
from .search import (
    MODES,
    Hypothesis,
    beam_search,
    decode,
    greedy,
    hybrid,
    hybrid_pool,
    length_penalty,
    sample,
    score_targets,
)
from .seq2seq import CodeSeq2Seq, DecoderSession

__all__ = [
    "MODES",
    "PRESETS",
    "Candidate",
    "CodeSeq2Seq",
    "DecoderSession",
    "Hypothesis",
    "NGramCompleter",
    "NGramModel",
    "NGramReranker",
    "NearestBody",
    "Reranking",
    "Seq2SeqConfig",
    "baseline_scores",
    "beam_search",
    "choose_reranking",
    "decode",
    "evaluate_outputs",
    "greedy",
    "hybrid",
    "hybrid_pool",
    "length_penalty",
    "preset",
    "real_edit_scores",
    "sample",
    "score_targets",
    "task_scores",
    "unchanged",
]
