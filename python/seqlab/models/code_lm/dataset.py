"""The code LM's data: a source corpus split by file, its BPE tokenizer (trained on the
training files only) and one token stream per split, files joined by the end-of-file token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...data.byte_bpe import EOT_ID, ByteBPETokenizer
from ...data.source_files import SourceCorpus, SourceFile, corpus_report, read_source_files
from .config import CodeLMConfig

SPLITS = ("train", "val", "test")


@dataclass
class CodeData:
    """Corpus, split, tokenizer and token streams of one run."""

    corpus: SourceCorpus
    splits: dict[str, list[SourceFile]]
    tokenizer: ByteBPETokenizer
    streams: dict[str, np.ndarray]

    def split_bytes(self, split: str) -> int:
        return sum(len(f.data) for f in self.splits[split])

    def statistics(self) -> dict[str, Any]:
        """Repository statistics (files, lines, bytes, tokens per split; skip counts)."""
        return corpus_report(self.corpus, self.splits, {k: len(v) for k, v in self.streams.items()})

    def summary(self) -> str:
        s = self.statistics()
        t = s["total"]
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(s["skipped"].items())) or "none"
        return (
            f"{t['files']} files, {t['lines']:,} lines, {t['bytes']:,} bytes, {t['tokens']:,} tokens from "
            f"{s['root']} (train/val/test files {s['splits']['train']['files']}/"
            f"{s['splits']['val']['files']}/"
            f"{s['splits']['test']['files']}; skipped: {skipped})"
        )


def token_stream(tokenizer: ByteBPETokenizer, files: list[SourceFile]) -> np.ndarray:
    """The files' tokens, each file followed by the end-of-file token (int64)."""
    if not files:
        return np.zeros(0, dtype=np.int64)
    parts = tokenizer.encode_batch([f.data for f in files])
    eot = np.array([EOT_ID], dtype=np.int64)
    return np.concatenate([x for p in parts for x in (p, eot)])


def read_corpus(path: str | Path | None, config: CodeLMConfig) -> SourceCorpus:
    """The corpus files of ``path`` (None: the machine's C sources) under the config's
    extensions and caps; cheap beside tokenizer training, so a recipe reads it (and refuses
    a bad path) before claiming its run directory.

    Raises:
        FileNotFoundError: ``path`` does not exist. ValueError: no usable file in it.
    """
    return read_source_files(
        path, config.extensions, config.max_file_bytes, config.max_total_bytes, seed=config.seed
    )


def train_tokenizer(files: list[SourceFile], config: CodeLMConfig, verbose: bool = True) -> ByteBPETokenizer:
    """The byte-level BPE of the training files. Under MPI rank 0 alone trains it and sends
    it to the other ranks, so every rank reads the corpus with the same tokens."""
    from ...distributed import broadcast_object, is_main, world_size

    trained = None
    if is_main():
        trained = ByteBPETokenizer.train([f.data for f in files], config.vocab_size)
        if verbose and trained.vocab_size < config.vocab_size:
            print(
                f"note: the training files support {trained.vocab_size} tokens, fewer than vocab_size "
                f"{config.vocab_size}"
            )
    if world_size() > 1:
        text = broadcast_object(trained.to_json() if trained is not None else None)
        trained = ByteBPETokenizer.from_json(text)
    assert trained is not None
    return trained


def prepare(
    path: str | Path | None,
    config: CodeLMConfig,
    tokenizer: ByteBPETokenizer | None = None,
    verbose: bool = True,
    corpus: SourceCorpus | None = None,
) -> CodeData:
    """Reads (unless ``corpus`` is given), splits and tokenizes the corpus; trains the
    tokenizer (:func:`train_tokenizer`) unless one is given."""
    corpus = corpus if corpus is not None else read_corpus(path, config)
    splits = corpus.split(config.split, seed=config.seed)
    if not splits["train"]:
        raise ValueError(
            f"{corpus.root}: {len(corpus.files)} usable file(s) leave none for training; "
            "add files or change split"
        )
    if tokenizer is None:
        tokenizer = train_tokenizer(splits["train"], config, verbose)
    streams = {name: token_stream(tokenizer, files) for name, files in splits.items()}
    data = CodeData(corpus, splits, tokenizer, streams)
    if verbose:
        print(f"corpus: {data.summary()}", flush=True)
    return data


def windows(stream: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping (inputs, targets) windows (N, seq_len) of a stream, targets shifted by one."""
    n = (len(stream) - 1) // seq_len
    if n < 1:
        return np.zeros((0, seq_len), np.int64), np.zeros((0, seq_len), np.int64)
    x = stream[: n * seq_len].reshape(n, seq_len)
    y = stream[1 : n * seq_len + 1].reshape(n, seq_len)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)
