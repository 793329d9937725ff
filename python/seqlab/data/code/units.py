"""The units pairs are mined from: functions of a source file, and windows of consecutive
statements of a function too long for the model.

A :class:`Function` is the text of one function definition (Python: ``def`` to the end of
its body, decorators left out, dedented to column 0; C: the header lines back to the
previous declaration, blank line or preprocessor line, to the closing brace), with the line
it starts on and the line count of its *head*: the signature plus the docstring (Python) or
the header up to the opening brace's line (C). ``comment`` is a C function's leading comment
(empty when there is none).

The bug-fix unit (:func:`bug_units`) is the whole function when it has at most ``max_len``
tokens, else windows of consecutive statements: Python, runs of consecutive statements of
one block (any block of the function), greedy up to ``max_len`` tokens and dedented; C,
runs of whole lines of the body, greedy up to ``max_len`` tokens, whose brackets balance.

The miners pass the *unit length* here (``unit_len`` of :func:`seqlab.data.code.mining.mine_code`,
the code optimizer's ``Seq2SeqConfig.unit_len``), which may be shorter than the model's
source length: a unit is then a small function or a window of a few statements, as a user
pastes into ``fix`` (a few lines around a suspect condition). Shorter units make an exact
match reachable (fewer tokens to reproduce, fewer places a bug can hide) and cost less per
training pair; longer ones give more context (a variable misuse is told by the names in
scope).
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass

from .lexers import CodeSyntaxError, c_lexemes
from .syntax import lexes
from .tokens import tokenize_code


@dataclass
class Function:
    """One function of a file: its text (ending with a newline), first line in the file
    (1-based), the number of head lines, and a C function's leading comment."""

    text: str
    line: int
    head_lines: int
    comment: str = ""


def _dedent_lines(lines: list[str], col: int) -> list[str] | None:
    out = []
    for ln in lines:
        if ln.strip() == "":
            out.append(ln[col:] if ln[:col].strip() == "" else ln.lstrip(" \t"))
        elif ln[:col].strip() == "" and len(ln) >= col:
            out.append(ln[col:])
        else:
            return None  # a line (inside a string) less indented than the def
    return out


def python_functions(code: str) -> list[Function]:
    """Every function and method of a Python module (nested ones too).

    Raises:
        CodeSyntaxError: the module does not parse (naming the line).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(code)
    except SyntaxError as e:
        raise CodeSyntaxError(f"line {e.lineno}: Python source does not parse: {e.msg}") from None
    lines = code.splitlines(keepends=True)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.end_lineno is None:
            continue
        body = _dedent_lines(lines[node.lineno - 1 : node.end_lineno], node.col_offset)
        if body is None:
            continue
        text = "".join(body)
        if not text.endswith("\n"):
            text += "\n"
        first = node.body[0]
        head_end = first.lineno - 1
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            head_end = (first.end_lineno or first.lineno) if len(node.body) > 1 else 0
        else:
            head_end = 0  # no docstring: no generation pair
        out.append(Function(text, node.lineno, head_end - node.lineno + 1 if head_end else 0))
    out.sort(key=lambda f: f.line)
    return out


def c_functions(code: str) -> list[Function]:
    """Every function definition of a C file, found at lexer level: a ``{`` at brace depth
    0 right after a ``)`` (outside preprocessor lines)."""
    lines = code.splitlines(keepends=True)
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln))
    preproc = _preprocessor_lines(lines)
    spans = [(s, e) for s, e, kind in c_lexemes(code) if kind not in ("block_comment", "line_comment")]
    line_of = _line_index(starts)
    out = []
    depth, prev, open_at = 0, "", -1  # prev: the last lexeme that is not an identifier
    for s, e in spans:
        li = line_of(s)
        if li in preproc:
            continue
        text = code[s:e]
        if text == "{":
            if depth == 0 and prev == ")":  # also after attribute macros: f (x) __THROW {
                open_at = li
            depth += 1
        elif text == "}":
            depth = max(0, depth - 1)
            if depth == 0 and open_at >= 0:
                fn = _c_function(lines, preproc, open_at, li)
                if fn is not None:
                    out.append(fn)
                open_at = -1
        if not (text[0].isalpha() or text[0] == "_"):
            prev = text
    return out


def _line_index(starts: list[int]):
    import bisect

    return lambda pos: bisect.bisect_right(starts, pos) - 1


def _preprocessor_lines(lines: list[str]) -> set[int]:
    out, cont = set(), False
    for i, ln in enumerate(lines):
        if cont or ln.lstrip().startswith("#"):
            out.add(i)
            cont = ln.rstrip("\r\n").endswith("\\")
        else:
            cont = False
    return out


def _c_function(lines: list[str], preproc: set[int], open_line: int, close_line: int) -> Function | None:
    start = open_line
    if lines[open_line].strip() == "{" or not lines[open_line].lstrip().startswith("{"):
        # walk back over the header lines
        while start > 0:
            above = lines[start - 1].strip()
            if (
                not above
                or start - 1 in preproc
                or above.endswith((";", "}", "*/"))
                or above.startswith(("//", "/*", "*"))
            ):
                break
            start -= 1
    if start == open_line and lines[open_line].strip() == "{":
        return None  # no header found
    if lines[close_line].strip() != "}" and not lines[close_line].strip().endswith("}"):
        return None
    comment_start = start
    while comment_start > 0:
        above = lines[comment_start - 1].strip()
        if above.startswith(("/*", "*", "//")) or above.endswith("*/"):
            comment_start -= 1
        else:
            break
    text = "".join(lines[start : close_line + 1])
    if not text.endswith("\n"):
        text += "\n"
    comment = "".join(lines[comment_start:start])
    if comment and not lexes(comment, "c"):
        comment = ""
    return Function(text, start + 1, open_line - start + 1, comment)


def functions(code: str, lang: str) -> list[Function]:
    """The functions of a file in ``lang``."""
    return python_functions(code) if lang == "python" else c_functions(code)


def line_token_counts(text: str, lang: str) -> list[int]:
    """Tokens starting on each line of ``text`` (a layout token with newlines counts on
    the line it starts on): the token count of a run of lines, to within one token."""
    counts = [0] * (text.count("\n") + 1)
    line = 0
    for t in tokenize_code(text, lang):
        counts[line] += 1
        line += t.count("\n")
    return counts


def _python_windows(fn: Function, max_len: int) -> list[str]:
    tree = ast.parse(fn.text)
    lines = fn.text.splitlines(keepends=True)
    counts = line_token_counts(fn.text, "python")
    out = []
    blocks = [
        getattr(n, f)
        for n in ast.walk(tree)
        for f in ("body", "orelse", "finalbody")
        if isinstance(getattr(n, f, None), list) and getattr(n, f) and isinstance(getattr(n, f)[0], ast.stmt)
    ]
    blocks += [h.body for n in ast.walk(tree) if isinstance(n, ast.Try) for h in n.handlers]

    def fits(run: list[ast.stmt]) -> bool:  # to within a token; checked exactly below
        return sum(counts[run[0].lineno - 1 : run[-1].end_lineno]) + 1 <= max_len

    for block in blocks:
        if block is tree.body:
            continue
        run: list[ast.stmt] = []
        for stmt in block:
            if run and fits([*run, stmt]):
                run.append(stmt)
                continue
            if run:
                out.append(_stmt_text(lines, run))
            run = [stmt] if fits([stmt]) else []
        if run:
            out.append(_stmt_text(lines, run))
    return [w for w in out if w is not None and _n_tokens(w, "python") <= max_len]


def _stmt_text(lines: list[str], run: list[ast.stmt]) -> str | None:
    first, last = run[0], run[-1]
    body = _dedent_lines(lines[first.lineno - 1 : last.end_lineno], first.col_offset)
    if body is None or body[0][:1].isspace():
        return None
    return "".join(body)


def _n_tokens(text: str, lang: str) -> int:
    try:
        return len(tokenize_code(text, lang))
    except CodeSyntaxError:
        return 1 << 30


def _c_windows(fn: Function, max_len: int) -> list[str]:
    lines = fn.text.splitlines(keepends=True)
    body = lines[fn.head_lines : len(lines) - 1]
    counts = [len(tokenize_code(ln, "c")) for ln in body]
    out, i = [], 0
    while i < len(body):
        j, total = i, 0
        while j < len(body) and total + counts[j] <= max_len:
            total += counts[j]
            j += 1
        end = j
        while end > i and not (lexes("".join(body[i:end]), "c") and "".join(body[i:end]).strip()):
            end -= 1
        if end > i:
            out.append("".join(body[i:end]))
            i = end
        else:
            i += 1
    return out


def bug_units(fn: Function, lang: str, max_len: int) -> list[str]:
    """The bug-fix units of a function: itself when it has at most ``max_len`` tokens,
    else its statement windows (see the module docstring)."""
    if _n_tokens(fn.text, lang) <= max_len:
        return [fn.text]
    return _python_windows(fn, max_len) if lang == "python" else _c_windows(fn, max_len)
