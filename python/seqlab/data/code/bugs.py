"""Injected bugs: every one-token-span edit of the bug classes of the learned-repair
literature (BugLab; Tufano et al.), on code tokens.

Classes (``BUG_CLASSES``):

- ``binary_operator``: an arithmetic, bitwise or shift operator swapped for another of its
  group (``+ - * / %``, ``& | ^``, ``<< >>``; Python also ``//``);
- ``comparison``: ``< <= > >= == !=`` swapped among themselves;
- ``boolean_operator``: ``and``/``or`` (Python), ``&&``/``||`` (C);
- ``off_by_one``: a decimal integer literal ``n`` made ``n + 1`` or ``n - 1``;
- ``variable_misuse``: a variable replaced by another variable used in the same unit
  (Python: names the unit's :mod:`ast` reads or binds; C: identifiers used at least twice in
  the unit, not called, not members, not ALL-CAPS macros, not in a type position);
- ``swapped_arguments``: two adjacent arguments of a call exchanged;
- ``negation``: a negation (``not``, ``!``) dropped or added in front of an operand after
  ``if``, ``elif``, ``while``, ``return``, ``and``/``or``, ``=`` (C: after ``if (``,
  ``while (``, ``&&``, ``||``, ``return``, ``=``).

The set is closed under inversion: undoing an edit is again an edit of the same class, which
is what lets the n-gram reranker of :mod:`seqlab.models.code.baselines` search over
:func:`enumerate_edits` of a buggy unit. :func:`inject_bug` picks one edit at random and
keeps it only when the mutant still parses (:func:`seqlab.data.code.syntax.parses`).
"""

from __future__ import annotations

import ast
import keyword
import re
import textwrap
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .syntax import parses
from .tokens import core, has_space, is_layout, with_space

BUG_CLASSES = (
    "binary_operator",
    "comparison",
    "boolean_operator",
    "off_by_one",
    "variable_misuse",
    "swapped_arguments",
    "negation",
)

_ARITH = {
    "python": [("+", "-", "*", "/", "%", "//"), ("&", "|", "^"), ("<<", ">>")],
    "c": [("+", "-", "*", "/", "%"), ("&", "|", "^"), ("<<", ">>")],
}
_COMPARISON = ("<", "<=", ">", ">=", "==", "!=")
_BOOLEAN = {"python": ("and", "or"), "c": ("&&", "||")}
_INT = {"python": re.compile(r"[0-9]+"), "c": re.compile(r"([0-9]+)([uUlL]*)")}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline int "
    "long register restrict return short signed sizeof static struct switch typedef union unsigned void "
    "volatile while _Bool _Complex _Imaginary _Alignas _Alignof _Atomic _Generic _Noreturn _Static_assert "
    "_Thread_local bool true false NULL".split()
)
_PY_OPERAND_KEYWORDS = frozenset({"True", "False", "None"})
_NEGATION_CONTEXT = {
    "python": frozenset({"if", "elif", "while", "return", "and", "or", "="}),
    "c": frozenset({"&&", "||", "return", "="}),
}


@dataclass(frozen=True)
class Edit:
    """Replace ``tokens[start:end]`` by ``replacement``; ``kind`` is the bug class."""

    kind: str
    start: int
    end: int
    replacement: tuple[str, ...]

    def apply(self, tokens: list[str]) -> list[str]:
        return [*tokens[: self.start], *self.replacement, *tokens[self.end :]]


def _is_keyword(word: str, lang: str) -> bool:
    return keyword.iskeyword(word) if lang == "python" else word in _C_KEYWORDS


def _operand_end(tok: str | None, lang: str) -> bool:
    """Whether a lexeme can end an operand (so that the next operator is binary)."""
    if tok is None:
        return False
    if tok in (")", "]") or tok[0].isdigit() or tok[0] in "\"'":
        return True
    if _IDENT.fullmatch(tok):
        return not _is_keyword(tok, lang) or (lang == "python" and tok in _PY_OPERAND_KEYWORDS)
    return lang == "python" and tok[-1] in "\"'"


def _operand_start(tok: str | None, lang: str) -> bool:
    """Whether a lexeme can start an operand (a unary minus or ``~`` included)."""
    if tok is None:
        return False
    if tok in ("(", "-", "~") or tok[0].isdigit() or tok[-1] in "\"'":
        return True
    return bool(_IDENT.fullmatch(tok)) and (not _is_keyword(tok, lang) or tok in _PY_OPERAND_KEYWORDS)


class _View:
    """Positions of the lexemes (non-layout tokens) of a token list and their cores."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = [i for i, t in enumerate(tokens) if not is_layout(t)]
        self.cores = [core(tokens[i]) for i in self.pos]

    def get(self, k: int) -> str | None:
        return self.cores[k] if 0 <= k < len(self.cores) else None


def _swap(tokens: list[str], i: int, new: str, kind: str) -> Edit:
    return Edit(kind, i, i + 1, (with_space(new, has_space(tokens[i])),))


def _python_variables(code: str) -> set[str]:
    """Names the unit binds (assignments, parameters) or reads without calling."""
    try:
        tree = ast.parse(textwrap.dedent(code))
    except (SyntaxError, ValueError):
        return set()
    called: set[str] = set()
    bound: set[str] = set()
    read: set[str] = set()
    params: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name):
            (read if isinstance(n.ctx, ast.Load) else bound).add(n.id)
        elif isinstance(n, ast.arg):
            params.add(n.arg)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            called.add(n.func.id)
    return (bound | params | (read - called)) - {"self", "cls"}


def _c_variables(v: _View) -> set[str]:
    counts: Counter[str] = Counter()
    for k, c in enumerate(v.cores):
        nxt, prev = v.get(k + 1), v.get(k - 1)
        if (
            _IDENT.fullmatch(c)
            and not _is_keyword(c, "c")
            and not c.isupper()
            and nxt != "("
            and prev not in (".", "->")
            and not (nxt is not None and _IDENT.fullmatch(nxt) and not _is_keyword(nxt, "c"))
        ):
            counts[c] += 1
    return {c for c, n in counts.items() if n >= 2}


def _call_arguments(v: _View, k: int) -> list[tuple[int, int]] | None:
    """Lexeme index ranges ``[a, b)`` of the arguments of the call whose ``(`` is lexeme
    ``k``; None when the call does not close or has a multi-line argument."""
    depth, args, start = 0, [], k + 1
    for j in range(k + 1, len(v.cores)):
        c = v.cores[j]
        if c in ("(", "[", "{"):
            depth += 1
        elif c in (")", "]", "}"):
            if depth == 0:
                args.append((start, j))
                return args
            depth -= 1
        elif c == "," and depth == 0:
            args.append((start, j))
            start = j + 1
    return None


def enumerate_edits(tokens: list[str], lang: str, code: str | None = None) -> list[Edit]:
    """Every edit of the bug classes applicable to ``tokens`` (of ``lang``), in token
    order. ``code`` is their text (computed when not given)."""
    code = "".join(tokens) if code is None else code
    v = _View(tokens)
    edits: list[Edit] = []
    groups = {op: g for g in _ARITH[lang] for op in g}
    boolean = _BOOLEAN[lang]
    int_re = _INT[lang]
    variables = _python_variables(code) if lang == "python" else _c_variables(v)
    in_body = lang == "python"  # C: no edits in a function header before its first "{"
    for k, c in enumerate(v.cores):
        i = v.pos[k]
        prev, nxt = v.get(k - 1), v.get(k + 1)
        if c == "{":
            in_body = True
        if c in groups and _operand_end(prev, lang) and _operand_start(nxt, lang):
            if (
                lang == "c"
                and c in ("*", "&")
                and not (has_space(tokens[i]) and has_space(tokens[v.pos[k + 1]]))
            ):
                pass  # pointer declarations and dereferences, address-of
            else:
                edits.extend(_swap(tokens, i, o, "binary_operator") for o in groups[c] if o != c)
        elif c in _COMPARISON and _operand_end(prev, lang) and _operand_start(nxt, lang):
            edits.extend(_swap(tokens, i, o, "comparison") for o in _COMPARISON if o != c)
        elif c in boolean:
            edits.append(_swap(tokens, i, boolean[1 - boolean.index(c)], "boolean_operator"))
        m = int_re.fullmatch(c)
        if m and prev != "." and nxt != ".":
            digits, suffix = (m.group(1), m.group(2)) if lang == "c" else (c, "")
            if not (len(digits) > 1 and digits[0] == "0"):
                n = int(digits)
                for new in (n + 1, n - 1):
                    if new >= 0:
                        edits.append(_swap(tokens, i, f"{new}{suffix}", "off_by_one"))
        if (
            c in variables
            and in_body
            and prev not in (".", "->", "def", "class", "import", "from", "as", "global", "nonlocal")
            and nxt not in ("(", "=")
        ):
            edits.extend(_swap(tokens, i, o, "variable_misuse") for o in sorted(variables) if o != c)
        if (
            c == "("
            and in_body
            and prev is not None
            and _IDENT.fullmatch(prev)
            and not _is_keyword(prev, lang)
        ):
            if k >= 2 and v.get(k - 2) in ("def", "class"):
                continue
            edits.extend(_argument_swaps(tokens, v, k))
        edits.extend(_negation_edits(tokens, v, k, lang))
    return edits


def _argument_swaps(tokens: list[str], v: _View, k: int) -> list[Edit]:
    args = _call_arguments(v, k)
    if not args or len(args) < 2:
        return []
    out = []
    for (a0, a1), (b0, b1) in zip(args, args[1:]):
        if a1 <= a0 or b1 <= b0:
            continue
        ta, tb = tokens[v.pos[a0] : v.pos[a1 - 1] + 1], tokens[v.pos[b0] : v.pos[b1 - 1] + 1]
        if any(is_layout(t) for t in ta + tb):
            continue
        ca, cb = "".join(v.cores[a0:a1]), "".join(v.cores[b0:b1])
        if (
            ca == cb
            or "=" in v.cores[a0:a1] + v.cores[b0:b1]
            or v.cores[a0] in ("*", "**")
            or v.cores[b0]
            in (
                "*",
                "**",
            )
        ):
            continue
        sa, sb = has_space(ta[0]), has_space(tb[0])
        new_a = [with_space(core(tb[0]), sa), *tb[1:]]
        new_b = [with_space(core(ta[0]), sb), *ta[1:]]
        middle = tokens[v.pos[a1] : v.pos[b0]]  # the comma and the layout around it
        out.append(Edit("swapped_arguments", v.pos[a0], v.pos[b1 - 1] + 1, (*new_a, *middle, *new_b)))
    return out


def _negation_edits(tokens: list[str], v: _View, k: int, lang: str) -> list[Edit]:
    c, prev = v.cores[k], v.get(k - 1)
    context = prev in _NEGATION_CONTEXT[lang] or (
        lang == "c" and prev == "(" and v.get(k - 2) in ("if", "while")
    )
    if not context or k + 1 >= len(v.cores):
        return []
    i, nxt = v.pos[k], v.get(k + 1)
    if v.pos[k + 1] != i + 1:
        return []  # a layout token between the negation and its operand
    neg = "not" if lang == "python" else "!"
    if c == neg and _operand_start(nxt, lang) and (lang == "c" or nxt != "not"):
        # drop: the operand takes the negation's leading space
        return [Edit("negation", i, i + 2, (with_space(core(tokens[i + 1]), has_space(tokens[i])),))]
    if _operand_start(c, lang) and not (lang == "python" and c in ("not", "lambda")):
        space = has_space(tokens[i])
        if lang == "python":
            return [Edit("negation", i, i + 1, (with_space("not", space), with_space(c, True)))]
        return [Edit("negation", i, i + 1, (with_space("!", space), c))]
    return []


def inject_bug(
    tokens: list[str],
    lang: str,
    rng: np.random.Generator,
    tries: int = 8,
    accept: Callable[[str], bool] | None = None,
) -> tuple[list[str], Edit] | None:
    """One random bug of ``tokens``: a bug class chosen uniformly among those applicable,
    then one of its edits; kept only when the mutant still parses and differs from the
    original (and, when given, ``accept(mutant text)`` holds). Returns ``(mutant tokens,
    edit)`` or None (no class applies, or ``tries`` draws all failed to parse)."""
    edits = enumerate_edits(tokens, lang)
    by_class: dict[str, list[Edit]] = {}
    for e in edits:
        by_class.setdefault(e.kind, []).append(e)
    if not by_class:
        return None
    kinds = sorted(by_class)
    for _ in range(tries):
        options = by_class[kinds[int(rng.integers(len(kinds)))]]
        edit = options[int(rng.integers(len(options)))]
        mutant = edit.apply(tokens)
        text = "".join(mutant)
        if text != "".join(tokens) and parses(text, lang) and (accept is None or accept(text)):
            return mutant, edit
    return None
