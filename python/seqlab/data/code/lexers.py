"""Lexers for the code models: the spans of every lexeme (no whitespace) of Python and C source.

Python goes through the standard library's :mod:`tokenize` (the language's own lexer); C
through :func:`c_lexemes`, a small regular-expression lexer of the C99 token classes
(comments, string and character literals, preprocessing numbers, identifiers, the
punctuators with longest match). Neither drops anything: whatever lies between two spans is
whitespace (or a backslash line continuation), which :mod:`seqlab.data.code.tokens` keeps
as layout tokens so that tokens join back to the exact text.
"""

from __future__ import annotations

import io
import re
import tokenize

LANGS = ("python", "c")


class CodeSyntaxError(ValueError):
    """Source that the language's lexer or parser rejects (message names where)."""


_C_PUNCT = sorted(
    "... <<= >>= -> ++ -- << >> <= >= == != && || += -= *= /= %= &= ^= |= ## "
    "[ ] ( ) { } . & * + - ~ ! / % < > ^ | ? : ; = , #".split(),
    key=len,
    reverse=True,
)
_C_TOKEN = re.compile(
    "|".join(
        [
            r"(?P<ws>\s+)",
            r"(?P<block_comment>/\*(?:[^*]|\*(?!/))*(?:\*/)?)",
            r"(?P<line_comment>//[^\n]*)",
            r"(?P<string>(?:u8|[LuU])?\"(?:\\.|[^\"\\\n])*\"?)",
            r"(?P<char>(?:[LuU])?'(?:\\.|[^'\\\n])*'?)",
            r"(?P<number>\.?[0-9](?:[eEpP][+-]|[0-9A-Za-z_.])*)",
            r"(?P<identifier>[A-Za-z_$][A-Za-z0-9_$]*)",
            "(?P<punct>" + "|".join(re.escape(p) for p in _C_PUNCT) + ")",
            r"(?P<other>\S)",
        ]
    )
)


def c_lexemes(code: str) -> list[tuple[int, int, str]]:
    """``(start, end, kind)`` of every C lexeme; ``kind`` is ``block_comment``,
    ``line_comment``, ``string``, ``char``, ``number``, ``identifier``, ``punct`` or
    ``other``. Never fails: an unterminated comment or literal runs to the end of the text
    or line (see :func:`c_syntax_errors`)."""
    out = []
    for m in _C_TOKEN.finditer(code):
        kind = m.lastgroup
        if kind != "ws":
            out.append((m.start(), m.end(), str(kind)))
    return out


_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSED_LITERAL = {
    "string": re.compile(r"(?:u8|[LuU])?\"(?:\\.|[^\"\\\n])*\""),
    "char": re.compile(r"(?:[LuU])?'(?:\\.|[^'\\\n])*'"),
}
_CLOSE = {v: k for k, v in _OPEN.items()}


def _line_of(code: str, pos: int) -> int:
    return code.count("\n", 0, pos) + 1


def c_syntax_errors(code: str) -> list[str]:
    """The lexer-level errors of a C snippet: unterminated comments, strings and character
    literals, unmatched or mismatched brackets; each message names its line. An empty list
    means the snippet passes the lexer-level check."""
    errors = []
    stack: list[tuple[str, int]] = []
    for start, end, kind in c_lexemes(code):
        text = code[start:end]
        if kind == "block_comment" and (len(text) < 4 or not text.endswith("*/")):
            errors.append(f"line {_line_of(code, start)}: unterminated comment")
        elif kind in ("string", "char") and not _CLOSED_LITERAL[kind].fullmatch(text):
            errors.append(f"line {_line_of(code, start)}: unterminated {kind} literal")
        elif kind == "punct" and text in _OPEN:
            stack.append((text, start))
        elif kind == "punct" and text in _CLOSE:
            if not stack:
                errors.append(f"line {_line_of(code, start)}: unmatched {text!r}")
            elif stack[-1][0] != _CLOSE[text]:
                errors.append(
                    f"line {_line_of(code, start)}: {text!r} closes {stack[-1][0]!r} "
                    f"opened on line {_line_of(code, stack[-1][1])}"
                )
                stack.pop()
            else:
                stack.pop()
    errors.extend(f"line {_line_of(code, pos)}: {b!r} never closed" for b, pos in stack)
    return errors


_SKIPPED_PY = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}


def python_lexemes(code: str) -> list[tuple[int, int, str]]:
    """``(start, end, kind)`` of every Python lexeme by :mod:`tokenize` (``kind`` is the
    token type name: NAME, OP, NUMBER, STRING, COMMENT, ...).

    Raises:
        CodeSyntaxError: the text does not tokenise (unterminated string or bracket at the
            end, inconsistent dedent), naming the line.
    """
    starts = [0]
    for line in code.split("\n")[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in _SKIPPED_PY:
                continue
            (r0, c0), (r1, c1) = tok.start, tok.end
            start, end = starts[r0 - 1] + c0, starts[r1 - 1] + c1
            if end > start:
                out.append((start, end, tokenize.tok_name[tok.type]))
    except (tokenize.TokenError, IndentationError, SyntaxError) as e:
        line = (
            e.args[1][0]
            if isinstance(e, tokenize.TokenError) and len(e.args) > 1
            else getattr(e, "lineno", "?")
        )
        raise CodeSyntaxError(f"line {line}: Python source does not tokenise: {e.args[0]}") from None
    return out


def lexemes(code: str, lang: str) -> list[tuple[int, int, str]]:
    """The lexeme spans of ``code`` in ``lang`` (``"python"`` or ``"c"``)."""
    if lang == "python":
        return python_lexemes(code)
    if lang == "c":
        return c_lexemes(code)
    raise ValueError(f"lang: unknown language {lang!r}, expected one of {LANGS}")
