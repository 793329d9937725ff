"""Poem corpora: one loader for the formats poems come in.

:func:`load_poems` detects the format of a file:

* a PoetryDB-style JSON list of records ``{"title", "author", "lines": [...]}``
  (a record may instead carry its text under ``"text"``, ``"poem"`` or ``"content"``);
* ``{"poems": [...]}`` wrapping such a list;
* a JSON list of strings (one poem each) or of lists of lines;
* JSON Lines (one record or string per line);
* fortune files (entries separated by a line ``%``, the author after ``--``);
* plain text with poems separated by blank lines (by two or more blank lines when
  the file has such gaps, so that stanzas stay together).

Records that hold no poem are skipped and listed with the reason in
``PoemCorpus.skipped``; a file with no poem at all is an error naming the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CORPUS = Path("/usr/share/games/fortunes/songs-poems")
_TEXT_KEYS = ("text", "poem", "content", "body")
_WORD = re.compile(r"[^\W_]", re.UNICODE)


@dataclass(frozen=True)
class Poem:
    """One poem: its text (lines joined by newlines), title, author and where it came from."""

    text: str
    title: str = ""
    author: str = ""
    source: str = ""

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n")


@dataclass
class PoemCorpus:
    """Poems read from one file, with the records skipped and why.

    Attributes:
        poems: the poems, in file order.
        path: the file read.
        format: the detected format (``"poetrydb-json"``, ``"json-strings"``, ``"json-lines"``,
            ``"fortune"``, ``"text"``, ...).
        skipped: ``(where, why)`` for every record that held no poem.
    """

    poems: list[Poem]
    path: Path | None = None
    format: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.poems)

    def __iter__(self) -> Iterator[Poem]:
        return iter(self.poems)

    def __getitem__(self, i: int) -> Poem:
        return self.poems[i]

    def summary(self) -> str:
        """One line: how many poems were read from where, and how many records were skipped."""
        text = f"read {len(self.poems)} poems from {self.path} ({self.format})"
        if self.skipped:
            reasons: dict[str, int] = {}
            for _, why in self.skipped:
                reasons[why] = reasons.get(why, 0) + 1
            parts = ", ".join(f"{n} {why}" for why, n in reasons.items())
            text += f"; skipped {len(self.skipped)} records: {parts}"
        return text


def _has_words(text: str) -> bool:
    return bool(_WORD.search(text))


class _Collector:
    def __init__(self) -> None:
        self.poems: list[Poem] = []
        self.skipped: list[tuple[str, str]] = []

    def add(self, text: str, where: str, title: str = "", author: str = "") -> None:
        text = "\n".join(line.rstrip() for line in text.strip("\n").split("\n")).strip()
        if not text:
            self.skipped.append((where, "empty"))
        elif not _has_words(text):
            self.skipped.append((where, "no words (only punctuation or symbols)"))
        else:
            self.poems.append(Poem(text=text, title=title.strip(), author=author.strip(), source=where))

    def add_record(self, record: Any, where: str) -> None:
        if isinstance(record, str):
            self.add(record, where)
        elif isinstance(record, list):
            if all(isinstance(line, str) for line in record):
                self.add("\n".join(record), where)
            else:
                self.skipped.append((where, "list with non-string lines"))
        elif isinstance(record, dict):
            title = record["title"] if isinstance(record.get("title"), str) else ""
            author = record["author"] if isinstance(record.get("author"), str) else ""
            lines = record.get("lines")
            if isinstance(lines, list) and all(isinstance(line, str) for line in lines):
                self.add("\n".join(lines), where, title, author)
                return
            for key in _TEXT_KEYS:
                if isinstance(record.get(key), str):
                    self.add(record[key], where, title, author)
                    return
            self.skipped.append((where, "record without 'lines' or text"))
        else:
            self.skipped.append((where, f"{type(record).__name__} is not a poem record"))


def _decode(path: Path, raw: bytes, encoding: str) -> str:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: not valid {encoding} text (byte {e.start}, line {line}); "
            "give encoding=... for other encodings"
        ) from None
    return text.removeprefix("\ufeff")


def _parses(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _parse_json_lines(path: Path, text: str, out: _Collector) -> None:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {number}: invalid JSON ({e.msg} at column {e.colno})") from None
        out.add_record(record, f"line {number}")


def _parse_fortune(text: str, out: _Collector) -> None:
    line_no = 1
    for entry in re.split(r"^%[ \t]*$", text, flags=re.MULTILINE):
        where = f"line {line_no}"
        line_no += entry.count("\n")
        author = ""
        lines = entry.strip("\n").split("\n")
        # The attribution is the last line(s) starting with "--", usually indented.
        while lines and lines[-1].strip().startswith("--"):
            author = lines.pop().strip()[2:].strip() + (f"; {author}" if author else "")
        if not "".join(lines).strip():
            if entry.strip():
                out.skipped.append((where, "empty"))
            continue
        out.add("\n".join(lines), where, author=author)


def _parse_text(text: str, out: _Collector) -> None:
    separator = r"\n[ \t]*\n([ \t]*\n)+" if re.search(r"\n[ \t]*\n[ \t]*\n", text) else r"\n[ \t]*\n"
    line_no = 1
    pos = 0
    for match in [*re.finditer(separator, text), None]:
        end = match.start() if match else len(text)
        block = text[pos:end]
        if block.strip():
            out.add(block, f"line {line_no + block[: len(block) - len(block.lstrip())].count(chr(10))}")
        line_no += text[pos : (match.end() if match else end)].count("\n")
        pos = match.end() if match else end


def load_poems(
    path: str | Path | None = None, *, encoding: str = "utf-8", verbose: bool = False
) -> PoemCorpus:
    """Reads poems from a file in any of the supported formats (see the module docs).

    Args:
        path: the file; None reads the default corpus, the ``songs-poems`` file of
            Debian's ``fortunes`` package (``apt-get install fortunes``).
        encoding: the file's text encoding.
        verbose: print the corpus summary (count and skipped records).

    Raises:
        FileNotFoundError: the file (or, with no path, the default corpus) is missing.
        ValueError: the file is not text in ``encoding``, holds malformed JSON (the
            line and column are named), or holds no poem at all.
    """
    if path is None:
        path = DEFAULT_CORPUS
        if not path.is_file():
            raise FileNotFoundError(
                f"the default poem corpus {path} is missing: install it with "
                "'apt-get install fortunes' (the README's set-up does), or pass a path"
            )
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"poem file {path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file of poems")
    raw = path.read_bytes()
    text = _decode(path, raw, encoding)
    if not text.strip():
        raise ValueError(f"{path}: the file is empty")
    out = _Collector()
    stripped = text.lstrip()
    fmt: str
    if stripped[:1] in "[{":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            lines = [ln for ln in text.split("\n") if ln.strip()]
            looks_jsonl = len(lines) > 1 and e.lineno > 1 and _parses(lines[0])
            if looks_jsonl:
                _parse_json_lines(path, text, out)
                fmt = "json-lines"
            else:
                raise ValueError(
                    f"{path}, line {e.lineno}: invalid JSON ({e.msg} at column {e.colno})"
                ) from None
        else:
            if isinstance(doc, dict) and isinstance(doc.get("poems"), list):
                records, fmt = doc["poems"], "json-poems-object"
            elif isinstance(doc, list):
                records, fmt = doc, "json-list"
            elif isinstance(doc, dict):
                records, fmt = [doc], "json-object"
            else:
                raise ValueError(f"{path}: JSON holds a {type(doc).__name__}, expected a list of poems")
            for i, record in enumerate(records):
                out.add_record(record, f"record {i}")
            if records and all(isinstance(r, dict) for r in records):
                fmt = "poetrydb-json" if fmt == "json-list" else fmt
    elif re.search(r"^%[ \t]*$", text, flags=re.MULTILINE):
        _parse_fortune(text, out)
        fmt = "fortune"
    else:
        _parse_text(text, out)
        fmt = "text"
    corpus = PoemCorpus(poems=out.poems, path=path, format=fmt, skipped=out.skipped)
    if not corpus.poems:
        reasons = "; ".join(f"{where}: {why}" for where, why in out.skipped[:5])
        raise ValueError(
            f"{path}: no poems found ({fmt} format, {len(out.skipped)} records skipped"
            + (f": {reasons}" if reasons else "")
            + ")"
        )
    if verbose:
        print(corpus.summary())
    return corpus
