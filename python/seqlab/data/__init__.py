"""Data: poems, text, vocabularies, word vectors, time series, event streams and batching."""

from .batching import ArrayBatches, BatchSource, PaddedBatch, SequenceBatches, pad_sequences
from .byte_bpe import ByteBPETokenizer
from .events import Event, EventFormatError, EventStream, aread_events, events_to_series, read_events
from .poems import Poem, PoemCorpus, load_poems
from .source_files import SourceCorpus, SourceFile, read_source_files
from .sources import load_series
from .synthetic_events import synthetic_events, write_synthetic_events
from .text import ChunkReport, chunk, chunk_all, tokenize
from .timeseries import (
    Scaler,
    TimeSeries,
    WindowSplits,
    load_dataset,
    make_splits,
    make_windows,
    read_csv_series,
)
from .vocabulary import Vocabulary
from .word_vectors import WordVectors, fit_word_vectors, load_word_vectors

__all__ = [
    "ArrayBatches", "BatchSource", "ByteBPETokenizer", "SourceCorpus", "SourceFile", "read_source_files",
    "ChunkReport", "Event", "EventFormatError", "EventStream", "PaddedBatch",
    "Poem", "PoemCorpus", "Scaler", "SequenceBatches", "TimeSeries", "Vocabulary", "WindowSplits",
    "WordVectors", "aread_events", "chunk", "chunk_all", "events_to_series", "fit_word_vectors",
    "load_dataset", "load_poems", "load_series", "load_word_vectors", "make_splits", "make_windows",
    "pad_sequences", "read_csv_series", "read_events", "synthetic_events", "tokenize",
    "write_synthetic_events",
]
