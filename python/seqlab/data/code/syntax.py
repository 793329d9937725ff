"""Does a snippet parse? Python by its own parser (:mod:`ast`), C at lexer level.

C snippets here are functions or statement windows cut out of files whose headers and macros
are not at hand, so a compiler cannot judge them; the lexer-level check (comments and
literals terminated, brackets matched) is what the bug injection and the parse-rate metric
use. :func:`gcc_syntax_ok` runs ``gcc -fsyntax-only`` on a complete translation unit, for
callers that have one.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import textwrap
import warnings

from .lexers import LANGS, CodeSyntaxError, c_syntax_errors, python_lexemes


def python_parses(code: str) -> bool:
    """True when ``code`` (dedented by its common indentation) is a valid Python module."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(textwrap.dedent(code))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def lexes(code: str, lang: str) -> bool:
    """The lexer-level check: C by :func:`c_syntax_errors`, Python by :mod:`tokenize`
    (for fragments such as one line of a block, which the parser alone would refuse)."""
    if lang == "c":
        return not c_syntax_errors(code)
    if lang == "python":
        try:
            python_lexemes(code)
        except CodeSyntaxError:
            return False
        return True
    raise ValueError(f"lang: unknown language {lang!r}, expected one of {LANGS}")


def parses(code: str, lang: str) -> bool:
    """True when ``code`` parses: Python by :mod:`ast` (after dedenting), C by the
    lexer-level check."""
    if lang == "python":
        return python_parses(code)
    return lexes(code, lang)


def gcc_syntax_ok(code: str, timeout: float = 10.0) -> bool | None:
    """``gcc -fsyntax-only`` on ``code`` as a whole C file: True/False, or None when gcc is
    not installed."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    proc = subprocess.run(
        [gcc, "-fsyntax-only", "-x", "c", "-"], input=code, capture_output=True, text=True, timeout=timeout
    )
    return proc.returncode == 0
