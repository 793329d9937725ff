"""Code pairs: one ``(task, source, target)`` example, and reading them from JSON Lines.

A JSON Lines file holds one object per line: ``{"task", "source", "target"}`` with an
optional ``"lang"`` (``"python"`` or ``"c"``; guessed when absent: Python when the source
tokenises as Python and any of source or target parses, else C) and an optional ``"file"``
(the file the pair comes from; pairs of one file stay on one side of the split). Other
fields are kept in :attr:`CodePair.meta`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ...serialization import atomic_write_text
from .lexers import LANGS, CodeSyntaxError
from .syntax import lexes, parses, python_parses
from .tokens import tokenize_code

TASKS = ("bug_fix", "completion", "generation")


class CodeDataError(ValueError):
    """A code data file or record that cannot be used (the message names it)."""


@dataclass
class CodePair:
    """One example: ``source`` -> ``target`` for ``task`` in ``lang``.

    Attributes:
        task: ``"bug_fix"``, ``"completion"`` or ``"generation"``.
        lang: ``"python"`` or ``"c"``.
        source, target: the texts.
        file: where the pair comes from (the split keeps a file on one side).
        line: the 1-based line of ``file`` (the source file's line for mined pairs, the
            JSONL line for read ones).
        kind: the bug class of a mined ``bug_fix`` pair, else ``""``.
        meta: other fields of a JSONL record.
    """

    task: str
    lang: str
    source: str
    target: str
    file: str = ""
    line: int = 0
    kind: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def source_tokens(self) -> list[str]:
        return tokenize_code(self.source, self.lang)

    @cached_property
    def target_tokens(self) -> list[str]:
        return tokenize_code(self.target, self.lang)

    def key(self) -> tuple[str, str, str, str]:
        """What makes two pairs duplicates: task, language, source and target."""
        return (self.task, self.lang, self.source, self.target)

    def to_dict(self) -> dict[str, Any]:
        d = {"task": self.task, "lang": self.lang, "source": self.source, "target": self.target}
        if self.file:
            d["file"] = self.file
        if self.kind:
            d["kind"] = self.kind
        return {**self.meta, **d}


def check_task(task: str, where: str = "task") -> str:
    if task not in TASKS:
        raise CodeDataError(f"{where}: unknown task {task!r}, expected one of {TASKS}")
    return task


def check_lang(lang: str, where: str = "lang") -> str:
    if lang not in LANGS:
        raise CodeDataError(f"{where}: unknown language {lang!r}, expected one of {LANGS}")
    return lang


def guess_lang(source: str, target: str) -> str:
    """``"python"`` when the source tokenises as Python and the source or target parses as
    Python, else ``"c"``."""
    if lexes(source, "python") and (python_parses(source) or python_parses(target)):
        return "python"
    return "c"


def read_pairs_jsonl(path: str | Path, lang: str = "auto", require_parse: bool = False) -> list[CodePair]:
    """The pairs of a JSON Lines file (blank lines skipped).

    Args:
        path: the file.
        lang: ``"auto"`` (each record's ``lang`` field, else guessed), ``"python"`` or
            ``"c"`` (records of another language are refused).
        require_parse: also refuse a record whose source does not parse
            (:func:`seqlab.data.code.syntax.parses`: Python by :mod:`ast`, C at lexer
            level); by default only a source that does not tokenise is refused, so that
            fragments (a few lines around a change) are accepted.

    Raises:
        CodeDataError: naming the file and line: an empty or binary file, a line that is not
            a JSON object, a missing or non-string field, an unknown task or language, a
            source that does not tokenise (or, with ``require_parse``, parse) in its
            language.
    """
    path = Path(path)
    raw = path.read_bytes()
    if not raw.strip():
        raise CodeDataError(f"{path}: the file is empty (expected JSON Lines of code pairs)")
    if b"\0" in raw:
        raise CodeDataError(f"{path}: binary file (NUL bytes), expected JSON Lines of code pairs")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CodeDataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    pairs = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}, line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise CodeDataError(f"{where}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise CodeDataError(f"{where}: expected a JSON object with task, source, target")
        for name in ("task", "source", "target"):
            if name not in obj:
                raise CodeDataError(f"{where}: missing field {name!r} (a pair needs task, source, target)")
            if not isinstance(obj[name], str):
                raise CodeDataError(
                    f"{where}: field {name!r} must be a string, got {type(obj[name]).__name__}"
                )
        task = check_task(obj["task"], f"{where}: field 'task'")
        rec_lang = obj.get("lang")
        if rec_lang is not None:
            check_lang(rec_lang, f"{where}: field 'lang'")
        if lang != "auto" and rec_lang is not None and rec_lang != lang:
            raise CodeDataError(f"{where}: record language {rec_lang!r} differs from lang={lang!r}")
        pair_lang = rec_lang or (lang if lang != "auto" else guess_lang(obj["source"], obj["target"]))
        if not obj["source"].strip():
            raise CodeDataError(f"{where}: field 'source' is empty")
        try:
            tokenize_code(obj["source"], pair_lang)
            tokenize_code(obj["target"], pair_lang)
        except CodeSyntaxError as e:
            raise CodeDataError(f"{where}: does not tokenise as {pair_lang}: {e}") from None
        if require_parse and not parses(obj["source"], pair_lang):
            raise CodeDataError(f"{where}: field 'source' does not parse as {pair_lang}")
        meta = {k: v for k, v in obj.items() if k not in ("task", "lang", "source", "target", "file", "kind")}
        pairs.append(
            CodePair(
                task,
                pair_lang,
                obj["source"],
                obj["target"],
                str(obj.get("file", f"{path}:{lineno}")),
                lineno,
                str(obj.get("kind", "")),
                meta,
            )
        )
    return pairs


def write_pairs_jsonl(pairs: list[CodePair], path: str | Path, overwrite: bool = False) -> Path:
    """Writes pairs as JSON Lines; refuses to replace an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it")
    atomic_write_text(path, "".join(json.dumps(p.to_dict()) + "\n" for p in pairs))
    return path
