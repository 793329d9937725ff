"""Code data for the code optimizer: lexer-level tokens that join back to the code, bug
injection, mining of the ``bug_fix``/``completion``/``generation`` tasks from source files,
user pairs from JSON Lines, the default corpus, the split by file, and the ids and batches
of a pointer-generator model (vocabulary ids and extended ids kept apart).

The pipeline a recipe runs::

    corpus = load_code_data(data, task="all", lang="auto", max_len=100)
    splits = split_by_file(corpus.pairs, seed=0)
    vocab = build_code_vocabulary(splits.train, max_size=50_000)
    train = CodeBatches(encode_pairs(splits.train, vocab, 100, 100), batch_size=32)
"""

from .bugs import BUG_CLASSES, Edit, enumerate_edits, inject_bug
from .corpus import CodeCorpus, load_code_data, mine_completions, source_files
from .encoding import (
    BOS,
    EOS,
    CodeBatch,
    CodeBatches,
    EncodedPairs,
    build_code_vocabulary,
    decode_ids,
    encode_pairs,
    source_ids,
    target_ids,
)
from .lexers import LANGS, CodeSyntaxError
from .mining import mine_code, mine_file
from .pairs import TASKS, CodeDataError, CodePair, read_pairs_jsonl, write_pairs_jsonl
from .splits import CodeSplits, add_training_pairs, check_no_leakage, split_by_file
from .syntax import gcc_syntax_ok, lexes, parses
from .tokens import detokenize_code, tokenize_code

__all__ = [
    "BOS",
    "BUG_CLASSES",
    "EOS",
    "LANGS",
    "TASKS",
    "CodeBatch",
    "CodeBatches",
    "CodeCorpus",
    "CodeDataError",
    "CodePair",
    "CodeSplits",
    "CodeSyntaxError",
    "Edit",
    "EncodedPairs",
    "build_code_vocabulary",
    "check_no_leakage",
    "decode_ids",
    "detokenize_code",
    "encode_pairs",
    "enumerate_edits",
    "gcc_syntax_ok",
    "inject_bug",
    "lexes",
    "load_code_data",
    "mine_code",
    "mine_file",
    "parses",
    "read_pairs_jsonl",
    "source_files",
    "source_ids",
    "split_by_file",
    "add_training_pairs",
    "mine_completions",
    "target_ids",
    "tokenize_code",
    "write_pairs_jsonl",
]
