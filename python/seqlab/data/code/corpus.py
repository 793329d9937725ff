"""From what the user passed to code pairs: a folder of sources, one source file, a JSON
Lines file of pairs, a list of pairs, or nothing (the default corpus).

The default corpus is real code already on the machine: the running interpreter's standard
library (``.py`` files outside ``test``/``tests``/``idle_test`` folders and ``site-packages``)
and the C headers and sources under ``/usr/include`` that define functions (C++ headers,
recognised by ``namespace``, ``template <`` or ``class`` lines, are left out). It is capped
(:data:`DEFAULT_MAX_FILES` files per language, chosen at random with the seed, and
:data:`DEFAULT_MAX_PAIRS` pairs per task and language, a random subset) so that the default preset
trains in minutes on two cores.
"""

from __future__ import annotations

import os
import re
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .lexers import LANGS
from .mining import SUFFIXES, lang_of_path, mine_code, read_source
from .pairs import TASKS, CodeDataError, CodePair, check_lang, check_task, read_pairs_jsonl

DEFAULT_MAX_FILES = {"python": 150, "c": 1000}
DEFAULT_MAX_PAIRS = 3000
C_DIRS = ("/usr/include", "/usr/local/include", "/usr/src")
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__", "lib2to3", "ensurepip"}
_CPP = re.compile(r"^\s*(?:namespace\b|template\s*<|class\s+\w+\s*[:{]|using\s+namespace\b)", re.M)
_C_FUNCTION = re.compile(r"\)[ \t]*\n?[ \t]*\{|^\{", re.M)


@dataclass
class CodeCorpus:
    """Pairs and where they came from.

    Attributes:
        pairs: the pairs, in file order.
        source: a description of the data (folder, file, ``"default corpus: ..."``).
        files: the number of source files read (0 for JSONL or given pairs).
        skipped: ``(file, reason)`` of the files of a folder that were skipped (empty,
            binary, not parsing); a single file given by the user is never skipped: it
            raises.
    """

    pairs: list[CodePair]
    source: str
    files: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: mined from source files (not read as pairs); their :attr:`CodePair.file` names are
    #: relative to ``root`` (None: the names are the paths)
    mined: bool = False
    root: Path | None = None
    #: how the corpus was mined (``max_len``, ``seed``), for :func:`mine_completions`
    mining: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Pairs per task."""
        return {
            t: sum(p.task == t for p in self.pairs) for t in TASKS if any(p.task == t for p in self.pairs)
        }


def _tasks(task: str) -> tuple[str, ...]:
    if task == "all":
        return TASKS
    return (check_task(task),)


def _langs(lang: str) -> tuple[str, ...]:
    if lang == "auto":
        return LANGS
    return (check_lang(lang),)


def source_files(folder: str | Path, langs: tuple[str, ...] = LANGS) -> list[Path]:
    """The ``.py``/``.c``/``.h`` files under ``folder`` (sorted; hidden folders skipped)."""
    out: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(root) / f for f in sorted(files) if SUFFIXES.get(Path(f).suffix.lower()) in langs)
    return out


def mine_files(
    paths: list[Path],
    tasks: tuple[str, ...],
    max_len: int,
    seed: int,
    lang: str | None = None,
    on_error: str = "skip",
    relative_to: Path | None = None,
    gcc: bool = False,
    unit_len: int | None = None,
    mutants: int = 1,
) -> tuple[list[CodePair], list[tuple[str, str]]]:
    """Pairs of many files; a file that cannot be used is skipped and named in the second
    list (``on_error="skip"``) or raises (``"raise"``). ``unit_len``, ``mutants``: the
    bug-fix units (:mod:`seqlab.data.code.mining`)."""
    pairs: list[CodePair] = []
    skipped = []
    for p in paths:
        name = str(p.relative_to(relative_to)) if relative_to else str(p)
        try:
            code = read_source(p)
            pairs.extend(
                mine_code(code, lang or lang_of_path(p) or "c", name, tasks, max_len, seed, gcc=gcc,
                          unit_len=unit_len, mutants=mutants)
            )
        except (CodeDataError, OSError) as e:
            if on_error == "raise":
                raise
            skipped.append((name, str(e)))
    return pairs, skipped


def _default_files(langs: tuple[str, ...], seed: int, max_files: dict[str, int]) -> list[Path]:
    rng = np.random.default_rng(seed)
    chosen: list[Path] = []
    if "python" in langs:
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        files = [
            p
            for p in source_files(stdlib, ("python",))
            if not _SKIP_DIRS & set(p.relative_to(stdlib).parts[:-1])
        ]
        chosen += [files[i] for i in sorted(rng.permutation(len(files))[: max_files["python"]])]
    if "c" in langs:
        files = []
        for d in C_DIRS:
            if Path(d).is_dir():
                files += source_files(d, ("c",))
        order = rng.permutation(len(files))
        picked: list[Path] = []
        for i in order:
            if len(picked) >= max_files["c"]:
                break
            try:
                text = files[i].read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if _C_FUNCTION.search(text) and not _CPP.search(text):  # C files that define functions
                picked.append(files[i])
        chosen += sorted(picked)
    return chosen


def cap_pairs(pairs: list[CodePair], max_pairs: int | dict[str, int] | None, seed: int) -> list[CodePair]:
    """At most ``max_pairs`` pairs per task and language (a ``{task: cap}`` dict: per task,
    tasks it does not name uncapped), a random subset kept in file order. Each task and
    language draws from its own generator (seeded by ``seed``, the task and the language),
    so the subset of one task does not depend on how many pairs another task has (the
    ``bug_fix`` unit length leaves the held-out ``completion`` pairs as they are)."""
    if max_pairs is None:
        return pairs
    keep = np.zeros(len(pairs), dtype=bool)
    for ti, t in enumerate(TASKS):
        cap = max_pairs.get(t, len(pairs)) if isinstance(max_pairs, dict) else max_pairs
        for li, lang in enumerate(LANGS):
            rng = np.random.default_rng([seed, ti, li])
            idx = np.array([i for i, p in enumerate(pairs) if p.task == t and p.lang == lang], dtype=np.int64)
            keep[idx[rng.permutation(len(idx))[:cap]] if len(idx) else idx] = True
    return [p for p, k in zip(pairs, keep) if k]


def load_code_data(
    data: Any = None,
    task: str = "all",
    lang: str = "auto",
    max_len: int = 100,
    seed: int = 0,
    max_files: dict[str, int] | None = None,
    max_pairs: int | dict[str, int] | None = None,
    gcc: bool = False,
    require_parse: bool = False,
    unit_len: int | None = None,
    mutants: int = 1,
) -> CodeCorpus:
    """The code pairs behind ``data``.

    Args:
        data: None (the default corpus, see the module docstring), a folder of sources
            (``.py``, ``.c``, ``.h``; unusable files are skipped and listed in
            :attr:`CodeCorpus.skipped`), one source file (errors raise), a ``.jsonl`` file
            of pairs (:func:`seqlab.data.code.pairs.read_pairs_jsonl`), or a list of
            :class:`CodePair` or of dicts with task, source, target[, lang].
        task: ``"bug_fix"``, ``"completion"``, ``"generation"`` or ``"all"``.
        lang: ``"python"``, ``"c"`` or ``"auto"`` (both / per file suffix / per record).
        max_len: the most tokens of a mined source or target (mining never truncates).
        seed: the seed of bug injection, completion points and the caps.
        max_files: files per language of the default corpus (default
            :data:`DEFAULT_MAX_FILES`).
        max_pairs: pairs per task and language, or a ``{task: pairs}`` dict (default:
            :data:`DEFAULT_MAX_PAIRS` for the default corpus, all otherwise).
        gcc: for C files of a folder or a file: keep a mutant only if its file still passes
            ``gcc -fsyntax-only`` where the original does (see
            :func:`seqlab.data.code.mining.mine_code`).
        require_parse: for a JSONL file: refuse a record whose source does not parse
            (:func:`seqlab.data.code.pairs.read_pairs_jsonl`).
        unit_len: the most tokens of a mined ``bug_fix`` unit (a function, else a window of
            statements; default ``max_len``; :mod:`seqlab.data.code.mining`).
        mutants: distinct injected bugs per ``bug_fix`` unit, each a pair.

    Raises:
        CodeDataError: unknown task or language, an empty or binary file, a JSONL record
            without its fields, a folder with no usable source, no pair of the task.
        FileNotFoundError: a path that does not exist.
    """
    tasks = _tasks(task)
    langs = _langs(lang)
    if data is None:
        paths = _default_files(langs, seed, {**DEFAULT_MAX_FILES, **(max_files or {})})
        pairs, skipped = mine_files(paths, tasks, max_len, seed, unit_len=unit_len, mutants=mutants)
        n_py = sum(lang_of_path(p) == "python" for p in paths)
        dirs = ", ".join(d for d in C_DIRS if Path(d).is_dir())
        description = (
            f"default corpus: {n_py} Python standard-library files, {len(paths) - n_py} C files of {dirs}"
        )
        cap = DEFAULT_MAX_PAIRS if max_pairs is None else max_pairs
        corpus = CodeCorpus(cap_pairs(pairs, cap, seed), description, len(paths), skipped, mined=True)
    elif isinstance(data, (list, tuple)):
        pairs = [p if isinstance(p, CodePair) else _pair_from_dict(p, i) for i, p in enumerate(data)]
        corpus = CodeCorpus(cap_pairs(pairs, max_pairs, seed), f"{len(pairs)} given pairs")
    elif isinstance(data, (str, Path)):
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: no such file or folder (expected a folder of sources, a source file "
                f"or a .jsonl file of pairs)"
            )
        if path.is_dir():
            paths = source_files(path, langs)
            if not paths:
                raise CodeDataError(
                    f"{path}: no source files ({', '.join(sorted(SUFFIXES))}) for lang={lang!r}"
                )
            pairs, skipped = mine_files(paths, tasks, max_len, seed, relative_to=path, gcc=gcc,
                                        unit_len=unit_len, mutants=mutants)
            corpus = CodeCorpus(cap_pairs(pairs, max_pairs, seed), str(path), len(paths), skipped, mined=True,
                                root=path)
        elif path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            pairs = read_pairs_jsonl(path, lang, require_parse)
            corpus = CodeCorpus(cap_pairs(pairs, max_pairs, seed), str(path))
        else:
            file_lang = lang_of_path(path) if lang == "auto" else lang
            if file_lang is None:
                raise CodeDataError(
                    f"{path}: unknown suffix {path.suffix!r}: expected a folder, a source file "
                    f"({', '.join(sorted(SUFFIXES))}) or a .jsonl file of pairs"
                )
            pairs, _ = mine_files([path], tasks, max_len, seed, file_lang, on_error="raise", gcc=gcc,
                                  unit_len=unit_len, mutants=mutants)
            corpus = CodeCorpus(cap_pairs(pairs, max_pairs, seed), str(path), 1, mined=True)
    else:
        raise TypeError(f"data: expected None, a path or a list of pairs, got {type(data).__name__}")
    corpus.pairs = [p for p in corpus.pairs if p.task in tasks and p.lang in langs]
    corpus.mining = {"max_len": max_len, "seed": seed}
    if not corpus.pairs:
        skipped_note = (
            f"; {len(corpus.skipped)} files skipped, first: {corpus.skipped[0]}" if corpus.skipped else ""
        )
        raise CodeDataError(f"{corpus.source}: no {'/'.join(tasks)} pairs in {'/'.join(langs)}{skipped_note}")
    return corpus


def _pair_from_dict(d: Any, i: int) -> CodePair:
    where = f"data[{i}]"
    if not isinstance(d, dict):
        raise CodeDataError(
            f"{where}: expected a CodePair or a dict with task, source, target, got {type(d).__name__}"
        )
    for name in ("task", "source", "target"):
        if not isinstance(d.get(name), str):
            raise CodeDataError(f"{where}: missing or non-string field {name!r}")
    check_task(d["task"], f"{where}: field 'task'")
    from .pairs import guess_lang

    lang = (
        check_lang(d["lang"], f"{where}: field 'lang'")
        if "lang" in d
        else guess_lang(d["source"], d["target"])
    )
    return CodePair(d["task"], lang, d["source"], d["target"], str(d.get("file", where)), i)


def mine_completions(corpus: CodeCorpus, files: Iterable[str], completions: int) -> list[CodePair]:
    """``completion`` pairs of up to ``completions`` cut points per function of ``files``
    (names of :attr:`CodeCorpus.pairs`' files) of a mined corpus, mined again with the
    corpus's ``max_len`` and seed (every cut point for a large ``completions``); [] for a
    corpus read as pairs. A file that can no longer be read or parsed gives nothing.

    The recipe takes more cut points in the training files only
    (:func:`seqlab.data.code.splits.add_training_pairs`), so the held-out pairs stay those
    of the corpus."""
    if not corpus.mined:
        return []
    max_len, seed = corpus.mining.get("max_len", 100), corpus.mining.get("seed", 0)
    out: list[CodePair] = []
    for name in sorted(set(files)):
        path = corpus.root / name if corpus.root is not None else Path(name)
        lang = lang_of_path(path)
        if lang is None:
            continue
        try:
            out += mine_code(read_source(path), lang, name, ("completion",), max_len, seed, completions)
        except (CodeDataError, OSError):
            continue
    return out
