"""Mining the three tasks from source files.

Per function of a file (:mod:`seqlab.data.code.units`):

- ``bug_fix``: each bug-fix unit (the function when it has at most ``unit_len`` tokens, else
  its statement windows of at most ``unit_len`` tokens; ``unit_len`` defaults to
  ``max_len``) with an injected bug (:func:`seqlab.data.code.bugs.inject_bug`) as the source
  and the unit as the target; ``mutants`` distinct mutants per unit (fewer when the unit
  offers fewer), each its own pair;
- ``completion``: the function's lines up to a point as the source, its next line as the
  target (CodeXGLUE's line-level completion); the next line is a whole one-line statement
  (Python: a simple statement; C: a line ending with ``;``), up to ``completions`` cut
  points per function drawn at random among those whose prefix has at most ``max_len``
  tokens;
- ``generation``: the signature with its docstring (Python) or the leading comment with the
  header (C) as the source, the rest of the function as the target.

Every source and target has at most ``max_len`` tokens: mining never truncates. C mutants
pass the lexer-level check; with ``gcc=True`` also ``gcc -fsyntax-only`` where the file
compiles alone (see :func:`mine_code`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .bugs import inject_bug
from .lexers import CodeSyntaxError, c_syntax_errors
from .pairs import TASKS, CodeDataError, CodePair
from .syntax import gcc_syntax_ok
from .tokens import tokenize_code
from .units import Function, bug_units, functions, line_token_counts

SUFFIXES = {".py": "python", ".c": "c", ".h": "c"}


def lang_of_path(path: str | Path) -> str | None:
    """``"python"`` for ``.py``, ``"c"`` for ``.c``/``.h``, else None."""
    return SUFFIXES.get(Path(path).suffix.lower())


def read_source(path: str | Path) -> str:
    """The text of a source file.

    Raises:
        CodeDataError: an empty file, a binary file (NUL bytes) or one that is not UTF-8
            (naming the file and the byte).
    """
    path = Path(path)
    raw = path.read_bytes()
    if not raw.strip():
        raise CodeDataError(f"{path}: the file is empty")
    if b"\0" in raw[:65536]:
        raise CodeDataError(f"{path}: binary file (NUL bytes), expected source code")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CodeDataError(f"{path}: not UTF-8 text (byte {e.start})") from None


def _completion_lines(fn: Function, lang: str) -> list[int]:
    """0-based line indices of ``fn.text`` that can be completion targets."""
    lines = fn.text.splitlines()
    if lang == "python":
        tree = ast.parse(fn.text)
        compound = (
            ast.FunctionDef,
            ast.AsyncFunctionDef,
            ast.ClassDef,
            ast.If,
            ast.For,
            ast.While,
            ast.With,
            ast.Try,
            ast.AsyncFor,
            ast.AsyncWith,
            ast.Match,
        )
        return sorted(
            n.lineno - 1
            for n in ast.walk(tree)
            if isinstance(n, ast.stmt)
            and not isinstance(n, compound)
            and n.lineno == n.end_lineno
            and n.lineno > max(1, fn.head_lines)
        )
    return [
        i
        for i in range(fn.head_lines, len(lines) - 1)
        if lines[i].rstrip().endswith(";")
        and not lines[i].lstrip().startswith(("/", "*"))
        and not c_syntax_errors(lines[i])
    ]


def _n_tokens(text: str, lang: str) -> int:
    return len(tokenize_code(text, lang))


def mine_function(
    fn: Function,
    lang: str,
    file: str,
    tasks: tuple[str, ...],
    max_len: int,
    rng: np.random.Generator,
    completions: int = 2,
    file_check: Callable[[str, str], bool] | None = None,
    unit_len: int | None = None,
    mutants: int = 1,
) -> list[CodePair]:
    """The pairs of one function (see the module docstring). ``file_check(unit, mutant)``,
    when given, must also accept a bug-fix mutant (see ``gcc`` in :func:`mine_code`)."""
    out = []
    if "bug_fix" in tasks:
        for unit in bug_units(fn, lang, min(max_len, unit_len or max_len)):
            accept = None if file_check is None else (lambda text, unit=unit: file_check(unit, text))
            tokens = tokenize_code(unit, lang)
            seen: set[str] = set()
            for _ in range(2 * mutants):  # distinct mutants: a repeated draw is dropped
                bug = inject_bug(tokens, lang, rng, accept=accept)
                if bug is None:
                    break
                text = "".join(bug[0])
                if text not in seen:
                    seen.add(text)
                    out.append(CodePair("bug_fix", lang, text, unit, file, fn.line, bug[1].kind))
                    if len(seen) >= mutants:
                        break
    lines = fn.text.splitlines(keepends=True)
    if "completion" in tasks:
        cuts = _completion_lines(fn, lang)
        counts = line_token_counts(fn.text, lang) if cuts else []
        taken = 0
        for k in rng.permutation(len(cuts)) if cuts else []:
            cut = cuts[int(k)]
            if sum(counts[:cut]) > max_len + 1:  # the prefix is too long (to within a token)
                continue
            prefix, line = "".join(lines[:cut]), lines[cut].rstrip("\r\n")
            if line.strip() and _n_tokens(prefix, lang) <= max_len and _n_tokens(line, lang) <= max_len:
                out.append(CodePair("completion", lang, prefix, line, file, fn.line + cut))
                taken += 1
                if taken >= completions:
                    break
    if "generation" in tasks and fn.head_lines and (lang == "python" or fn.comment):
        source = (fn.comment if lang == "c" else "") + "".join(lines[: fn.head_lines])
        target = "".join(lines[fn.head_lines :])
        if target.strip() and _n_tokens(source, lang) <= max_len and _n_tokens(target, lang) <= max_len:
            out.append(CodePair("generation", lang, source, target, file, fn.line))
    return out


def mine_code(
    code: str,
    lang: str,
    file: str = "<code>",
    tasks: tuple[str, ...] = TASKS,
    max_len: int = 100,
    seed: int = 0,
    completions: int = 2,
    gcc: bool = False,
    unit_len: int | None = None,
    mutants: int = 1,
) -> list[CodePair]:
    """The pairs of every function of ``code`` (one file's text); ``unit_len`` and
    ``mutants`` as in the module docstring.

    ``gcc=True`` (C): when the whole file passes ``gcc -fsyntax-only``, a bug-fix mutant is
    kept only if the file with the mutant in place of its unit passes too (one compiler run
    per mutant, so off by default; files that do not compile alone, such as most headers cut
    from their project, get the lexer-level check only).

    Raises:
        CodeDataError: Python source that does not parse (naming ``file`` and the line).
    """
    rng = np.random.default_rng([seed, sum(map(ord, file)) & 0xFFFFFFFF])
    try:
        fns = functions(code, lang)
    except CodeSyntaxError as e:
        raise CodeDataError(f"{file}: {e}") from None
    file_check = None
    if gcc and lang == "c" and gcc_syntax_ok(code):
        file_check = lambda unit, mutant: bool(gcc_syntax_ok(code.replace(unit, mutant, 1)))  # noqa: E731
    out = []
    for fn in fns:
        try:
            out.extend(
                mine_function(fn, lang, file, tasks, max_len, rng, completions, file_check, unit_len, mutants)
            )
        except (CodeSyntaxError, SyntaxError, RecursionError):
            continue  # a function whose pieces do not tokenise alone (rare): skipped
    return out


def mine_file(
    path: str | Path,
    lang: str | None = None,
    tasks: tuple[str, ...] = TASKS,
    max_len: int = 100,
    seed: int = 0,
    completions: int = 2,
    gcc: bool = False,
    unit_len: int | None = None,
    mutants: int = 1,
) -> list[CodePair]:
    """The pairs of one source file (language from the suffix unless given; ``gcc``,
    ``unit_len`` and ``mutants`` as in :func:`mine_code`).

    Raises:
        CodeDataError: unknown suffix, empty or binary file, Python that does not parse.
    """
    path = Path(path)
    lang = lang or lang_of_path(path)
    if lang is None:
        raise CodeDataError(
            f"{path}: unknown source suffix {path.suffix!r}, expected one of {sorted(SUFFIXES)}"
        )
    return mine_code(
        read_source(path), lang, str(path), tasks, max_len, seed, completions, gcc, unit_len, mutants
    )
