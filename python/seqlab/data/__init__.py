"""Data: loaders, tokenisation, vocabularies, word vectors and batching."""

from .batching import ArrayBatches, BatchSource, PaddedBatch, SequenceBatches, pad_sequences
from .poems import Poem, PoemCorpus, load_poems
from .text import ChunkReport, chunk, chunk_all, tokenize
from .vocabulary import Vocabulary
from .word_vectors import WordVectors, fit_word_vectors, load_word_vectors

__all__ = [
    "ArrayBatches", "BatchSource", "ChunkReport", "PaddedBatch", "Poem", "PoemCorpus", "SequenceBatches",
    "Vocabulary", "WordVectors", "chunk", "chunk_all", "fit_word_vectors", "load_poems", "load_word_vectors",
    "pad_sequences", "tokenize",
]
