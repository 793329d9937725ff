"""Train / validation / test split of code pairs by file, with exact duplicates removed
across the splits and a leakage check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..vector_chains import split_indices
from .pairs import CodePair


@dataclass
class CodeSplits:
    """The three splits and what the split removed.

    Attributes:
        train, val, test: the pairs.
        added_to_train: pairs added to ``train`` after the split (:func:`add_training_pairs`).
        duplicates_removed: pairs dropped from ``val``/``test`` because the same pair (task,
            language, source, target) is in an earlier split (``train``, then ``val``), and
            repeated pairs within a split.
    """

    train: list[CodePair]
    val: list[CodePair]
    test: list[CodePair]
    duplicates_removed: dict[str, int] = field(default_factory=dict)
    added_to_train: int = 0

    def items(self) -> list[tuple[str, list[CodePair]]]:
        return [("train", self.train), ("val", self.val), ("test", self.test)]


def split_by_file(
    pairs: Sequence[CodePair], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> CodeSplits:
    """Splits ``pairs`` by their :attr:`CodePair.file`: the files are shuffled with ``seed``
    and cut by ``fractions`` (each non-zero share gets at least one file), so no file has
    pairs on two sides; then exact duplicate pairs are removed across and within splits.
    The result passes :func:`check_no_leakage`."""
    files = sorted({p.file for p in pairs})
    parts = split_indices(len(files), fractions, seed, "files")
    side = {files[i]: name for name, idx in parts.items() for i in idx}
    seen: set[tuple[str, str, str, str]] = set()
    out: dict[str, list[CodePair]] = {"train": [], "val": [], "test": []}
    removed = {"train": 0, "val": 0, "test": 0}
    for name in ("train", "val", "test"):
        for p in pairs:
            if side[p.file] != name:
                continue
            if p.key() in seen:
                removed[name] += 1
                continue
            seen.add(p.key())
            out[name].append(p)
    splits = CodeSplits(out["train"], out["val"], out["test"], removed)
    check_no_leakage(splits)
    return splits


def check_no_leakage(splits: CodeSplits) -> None:
    """Raises ValueError when a file, or an identical pair, is in two splits."""
    file_side: dict[str, str] = {}
    pair_side: dict[tuple[str, str, str, str], str] = {}
    for name, pairs in splits.items():
        for p in pairs:
            other = file_side.setdefault(p.file, name)
            if other != name:
                raise ValueError(f"file {p.file!r} has pairs in both the {other!r} and {name!r} splits")
            other = pair_side.setdefault(p.key(), name)
            if other != name:
                raise ValueError(
                    f"the same {p.task} pair (from {p.file!r}, line {p.line}) is in both the {other!r} and "
                    f"{name!r} splits"
                )


def add_training_pairs(splits: CodeSplits, pairs: Sequence[CodePair]) -> CodeSplits:
    """``splits`` with ``pairs`` (more pairs mined from the training files, such as every
    completion cut point) added to ``train``: a pair of a file that is not a training file
    is refused, and a pair already in any split (or repeated) is dropped, so the held-out
    splits stay as they are and :func:`check_no_leakage` still holds (checked)."""
    train_files = {p.file for p in splits.train}
    seen = {p.key() for _, part in splits.items() for p in part}
    added = []
    for p in pairs:
        if p.file not in train_files:
            raise ValueError(f"add_training_pairs: {p.file!r} (line {p.line}) is not a training file")
        if p.key() not in seen:
            seen.add(p.key())
            added.append(p)
    out = CodeSplits([*splits.train, *added], splits.val, splits.test, dict(splits.duplicates_removed),
                     splits.added_to_train + len(added))
    check_no_leakage(out)
    return out
