"""Code tokens that join back to the exact text: lexemes plus layout.

A token is a substring of the code, and ``"".join(tokenize_code(code, lang)) == code`` for
every input (the round trip). The lexemes come from :mod:`seqlab.data.code.lexers`; the
whitespace between two lexemes becomes:

- nothing, when there is none (``a+b`` -> ``a``, ``+``, ``b``);
- a leading space of the next lexeme, when it is exactly one space (``a + b`` -> ``a``,
  `` +``, `` b``), as byte-level BPE vocabularies do, so ordinary spacing costs no tokens;
- layout tokens otherwise: each newline with the indentation that follows it is one token
  (``"\\n    "``), so indentation is kept and a Python block's depth is one token; other
  runs of spaces or tabs (alignment, trailing blanks) are their own tokens.

Comments and string literals are single tokens (rare ones are copied from the source by the
pointer-generator decoder).
"""

from __future__ import annotations

import re

from .lexers import lexemes

_LAYOUT_PIECE = re.compile(r"[^\n]+|\n[^\n]*")


def tokenize_code(code: str, lang: str) -> list[str]:
    """The tokens of ``code`` in ``lang`` (``"python"`` or ``"c"``); they join back to
    ``code`` exactly.

    Raises:
        CodeSyntaxError: Python source that :mod:`tokenize` rejects (named line).
    """
    spans = lexemes(code, lang)
    tokens: list[str] = []
    pos = 0
    for start, end, _ in spans:
        start = max(start, pos)  # spans never overlap (Python 3.12's f-string pieces can)
        if end <= start:
            continue
        gap = code[pos:start]
        lexeme = code[start:end]
        if gap == " ":
            lexeme = " " + lexeme
        elif gap:
            tokens.extend(_LAYOUT_PIECE.findall(gap))
        tokens.append(lexeme)
        pos = end
    if pos < len(code):
        tokens.extend(_LAYOUT_PIECE.findall(code[pos:]))
    return tokens


def detokenize_code(tokens: list[str]) -> str:
    """The code of ``tokens`` (their concatenation: tokens carry their own layout)."""
    return "".join(tokens)


def is_layout(token: str) -> bool:
    """True for whitespace tokens (newline + indentation, runs of blanks, a line
    continuation)."""
    return token.strip() in ("", "\\")


def ends_line(token: str) -> bool:
    """True for a layout token holding a newline."""
    return "\n" in token and is_layout(token)


def core(token: str) -> str:
    """A token without its leading space (layout tokens are returned as they are)."""
    return token[1:] if len(token) > 1 and token[0] == " " and not is_layout(token) else token


def has_space(token: str) -> bool:
    """True when a lexeme token carries a leading space."""
    return len(token) > 1 and token[0] == " " and not is_layout(token)


def with_space(text: str, space: bool) -> str:
    """``text`` as a token with or without a leading space."""
    return " " + text if space else text
