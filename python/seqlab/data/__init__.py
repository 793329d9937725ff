"""Data: batching (and, with the recipes, loaders, tokenizers and embeddings)."""

from .batching import ArrayBatches, BatchSource, PaddedBatch, SequenceBatches, pad_sequences

__all__ = ["ArrayBatches", "BatchSource", "PaddedBatch", "SequenceBatches", "pad_sequences"]
