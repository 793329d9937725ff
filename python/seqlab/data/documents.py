"""Documents split into chunks (paragraphs or sentences): the text side of vector chains.

Sources: a folder of ``.txt`` / ``.md`` files, a list of strings, or (the default
corpus, present on every machine with Python) the documentation of Python's standard
library modules, read from their source with :mod:`ast` (nothing is imported or run).
"""

from __future__ import annotations

import ast
import os
import re
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_STDLIB_SKIP = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "turtledemo",
                "ensurepip", "__pycache__", "__phello__"}


@dataclass
class Document:
    """A named document cut into chunks (in order)."""

    name: str
    chunks: list[str]


def split_chunks(text: str, unit: str = "paragraph", min_words: int = 5) -> list[str]:
    """Splits text into paragraphs (blank-line separated) or sentences, whitespace
    collapsed; chunks with fewer than ``min_words`` words are dropped."""
    if unit not in ("paragraph", "sentence"):
        raise ValueError(f"unit: expected 'paragraph' or 'sentence', got {unit!r}")
    paragraphs = [" ".join(p.split()) for p in _PARAGRAPH_BREAK.split(text)]
    pieces = paragraphs if unit == "paragraph" else [
        s for p in paragraphs for s in _SENTENCE_END.split(p)
    ]
    return [p for p in pieces if len(p.split()) >= min_words]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from e


def documents_from_folder(folder: str | Path, unit: str = "paragraph", min_words: int = 5) -> list[Document]:
    """Every ``.txt`` and ``.md`` file under ``folder`` (sorted), one document each."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".txt", ".md") and p.is_file())
    if not files:
        raise ValueError(f"{folder}: holds no .txt or .md files")
    return [Document(str(p.relative_to(folder)), split_chunks(_read_text(p), unit, min_words))
            for p in files]


def documents_from_texts(texts: Sequence[str], unit: str = "paragraph", min_words: int = 5) -> list[Document]:
    """One document per string, named ``"document i"``."""
    if len(texts) == 0:
        raise ValueError("no documents given (an empty list)")
    docs = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"documents[{i}]: expected a string, got {type(t).__name__}")
        docs.append(Document(f"document {i}", split_chunks(t, unit, min_words)))
    return docs


def _docstrings_in_order(tree: ast.Module) -> list[str]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                found.append((getattr(node, "lineno", 0), doc))
    return [doc for _, doc in sorted(found, key=lambda x: x[0])]


def python_docs(
    root: str | Path | None = None, unit: str = "paragraph", min_words: int = 5
) -> list[Document]:
    """The standard library's documentation: one document per module, its docstrings
    (module, classes, functions) in source order cut into chunks.

    Args:
        root: the library folder to read (default: this Python's ``stdlib``); test
            suites, IDLE, lib2to3 and installed packages are skipped.
    """
    base = Path(root) if root is not None else Path(sysconfig.get_paths()["stdlib"])
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: the standard library folder does not exist")
    files = []
    for folder, subdirs, names in os.walk(base):
        subdirs[:] = [d for d in subdirs if d not in _STDLIB_SKIP and not d.startswith("config-")]
        files += [Path(folder) / n for n in names if n.endswith(".py")]
    docs = []
    for path in sorted(files):
        rel = path.relative_to(base)
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue  # a file this Python cannot parse is not documentation
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        chunks = [c for doc in _docstrings_in_order(tree) for c in split_chunks(doc, unit, min_words)]
        docs.append(Document(name, chunks))
    if not docs:
        raise ValueError(f"{base}: no Python modules found")
    return docs


def load_documents(data: Any, unit: str = "paragraph", min_words: int = 5) -> tuple[list[Document], str]:
    """Documents from a folder, a list of strings, or None (Python's documentation).

    Returns (documents, a description of the source).
    """
    if data is None:
        return python_docs(unit=unit, min_words=min_words), "Python standard library documentation"
    if isinstance(data, (str, Path)):
        return documents_from_folder(data, unit, min_words), str(data)
    if isinstance(data, (list, tuple)) and all(isinstance(d, Document) for d in data):
        return list(data), "documents"
    return documents_from_texts(data, unit, min_words), f"{len(data)} documents"
