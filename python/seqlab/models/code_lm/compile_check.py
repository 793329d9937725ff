"""Compile rate: do generated C snippets pass ``gcc -fsyntax-only``?

A snippet (prompt + completion) is closed by balancing its braces (cut where a ``}``
has no ``{`` to close, ``}`` appended for every one left open; braces inside comments,
strings and character literals do not count; a completion that stopped at the token
limit first loses its unfinished last line) and checked with ``gcc -fsyntax-only
-std=gnu11`` after the standard C headers (fixed prompts) or, for a held-out function,
in the context its file is compiled in: the file's context (below), then the text of
the file before the function (the headers it included and its own declarations;
conditionals left open there are closed after the snippet). Prompts: the original
project's (``int main() {``, ``// Calculate the nth prime number``, ``void`` + the most
common name prefix of the training corpus' ``void`` functions) and the first lines of
held-out functions.

A file's context is found once per file, as the first of these in which the whole file
passes the same check: nothing (the file on its own); for a header that refuses direct
inclusion (an ``#error`` naming the public header to include instead, as glibc's
``bits/*.h`` do), that public header included with the file's own include guard defined
(so the header's text is not read twice) and undefined again; the public header alone;
the macros the ``#error``'s condition tests defined. A file that passes in none of them
is left out, with its functions counted as excluded, and so is a function in a region
the preprocessor skips (an ``#if`` branch not taken), where any text would pass. The
model, the n-gram and the true function are checked in the same context, so the true
functions' share is the upper bound of the other two.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STANDARD_INCLUDES = (
    "#include <stdio.h>",
    "#include <stdlib.h>",
    "#include <string.h>",
    "#include <stdint.h>",
    "#include <stddef.h>",
    "#include <stdbool.h>",
    "#include <math.h>",
)
FIXED_PROMPTS = ("int main() {\n", "// Calculate the nth prime number\n")
_INCLUDE = re.compile(r"^[ \t]*#[ \t]*include[ \t]*[<\"][^>\"\n]+[>\"]", re.MULTILINE)
# A function definition starting at column 0: return type and name, parameters, then '{'.
_FUNCTION = re.compile(
    r"^(?:static\s+|inline\s+|extern\s+|const\s+|unsigned\s+|signed\s+|struct\s+)*"
    r"[A-Za-z_]\w*[\s\*]+\**([A-Za-z_]\w*)\s*\(([^;{}()]|\([^;{}()]*\))*\)\s*\{",
    re.MULTILINE,
)
_CONDITIONAL_OPEN = re.compile(r"^[ \t]*#[ \t]*if(?:n?def)?\b", re.MULTILINE)
_CONDITIONAL_CLOSE = re.compile(r"^[ \t]*#[ \t]*endif\b", re.MULTILINE)
_VOID_NAME = re.compile(r"^(?:static\s+)?(?:inline\s+)?void\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)
_KEYWORDS = frozenset({"if", "for", "while", "switch", "return", "sizeof", "do", "else"})


@dataclass(frozen=True)
class CompilePrompt:
    """A prompt, what is compiled before it (include lines and, for a held-out function,
    its file's text before it), and for held-out functions the true function: the upper
    bound of what a completion can reach."""

    family: str
    text: str
    includes: tuple[str, ...]
    include_dirs: tuple[str, ...] = ()
    reference: str | None = None
    preamble: str = ""


def brace_depth_end(code: str) -> tuple[int, int]:
    """(depth of unclosed ``{`` at the end, index where a ``}`` first closes nothing or len(code)),
    ignoring braces in comments, strings and character literals."""
    depth, i, n = 0, 0, len(code)
    while i < n:
        c = code[i]
        if c == "/" and code.startswith("//", i):
            j = code.find("\n", i)
            i = n if j < 0 else j
            continue
        if c == "/" and code.startswith("/*", i):
            j = code.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        if c in "\"'":
            j = i + 1
            while j < n and code[j] != c and code[j] != "\n":
                j += 2 if code[j] == "\\" else 1
            i = j + 1
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                return 0, i
            depth -= 1
        i += 1
    return depth, n


def balance_braces(code: str) -> str:
    """``code`` cut where a ``}`` closes nothing, with a ``}`` appended per open ``{``."""
    depth, end = brace_depth_end(code)
    code = code[:end]
    if depth:
        code = code.rstrip() + "\n" + "}\n" * depth
    return code


def closes_function(code: str) -> bool:
    """True once a ``{`` was opened and every brace is closed again (a function ended)."""
    depth, end = brace_depth_end(code)
    return end < len(code) or (depth == 0 and "{" in code and code.rstrip().endswith("}"))


def includes_of(source: str) -> tuple[str, ...]:
    """The ``#include`` lines of a source file, in order."""
    return tuple(m.group(0).strip() for m in _INCLUDE.finditer(source))


@dataclass
class HeldOutFunctions:
    """The held-out function prompts chosen by :func:`choose_held_out_functions` and how.

    Attributes:
        prompts: the prompts, one per file first.
        files_read: held-out files looked at; ``files_with_functions`` of them define a
            function (a definition starting at column 0 of 3 lines or more).
        excluded_files: files with functions that pass the check in none of the contexts;
            ``excluded_functions`` counts their functions and the functions in regions the
            preprocessor skips.
        sources: prompts per source of held-out files (``"test"``, ``"val"``, ...).
        contexts: files per context kind that made them compile (``"alone"``,
            ``"public header"``, ...).
    """

    prompts: list[CompilePrompt] = field(default_factory=list)
    files_read: int = 0
    files_with_functions: int = 0
    excluded_files: int = 0
    excluded_functions: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    contexts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        """Everything but the prompts, for ``evaluation.json``."""
        return {k: v for k, v in self.__dict__.items() if k != "prompts"}


def _function_spans(text: str) -> list[tuple[int, int, int]]:
    """(start, end of the signature's ``{``, end of the function) of each function definition
    at column 0 of ``text`` with balanced braces, 3 lines or more and at most 4,000 characters."""
    spans = []
    for m in _FUNCTION.finditer(text):
        line_start = text.rfind("\n", 0, m.start())
        if m.group(1) in _KEYWORDS or text[:max(line_start, 0)].rstrip(" \t").endswith("\\"):
            continue  # a keyword, or a line of a macro definition (after a backslash-newline)
        body_start = m.end()
        depth, end = brace_depth_end(text[body_start:])
        if end >= len(text) - body_start or depth:  # unbalanced
            continue
        stop = body_start + end + 1
        if text[m.start() : stop].count("\n") < 2 or stop - m.start() > 4000:
            continue
        spans.append((m.start(), body_start, stop))
    return spans


_DIRECTIVE = re.compile(r"^[ \t]*#[ \t]*(\w+)[ \t]*(.*)$", re.MULTILINE)
_HEADER_NAME = re.compile(r"<([\w./+-]+\.h)>")
_TESTED_MACRO = re.compile(r"defined\s*\(?\s*(\w+)")


def own_include_guard(text: str) -> str | None:
    """The include guard of a header: the macro of its first ``#ifndef X`` / ``#if !defined X``
    whose next directive is ``#define X``; None when there is none."""
    directives = [(m.group(1), m.group(2).strip()) for m in _DIRECTIVE.finditer(text)]
    for (name, arg), (next_name, next_arg) in zip(directives, directives[1:]):
        tested = arg.split()[0] if name == "ifndef" and arg else None
        if name == "if" and arg.startswith("!"):
            found = _TESTED_MACRO.match(arg[1:].strip())
            tested = found.group(1) if found else None
        if tested and next_name == "define" and next_arg.split()[:1] == [tested]:
            return tested
    return None


def umbrella_headers(path: str, root: str | None) -> list[str]:
    """Headers named after a folder above ``path`` inside ``root``, version digits aside
    (``python3.11/Python.h`` for ``python3.11/internal/x.h``): a library's public header,
    which its internal headers expect to be read first."""
    if root is None:
        return []
    found = []
    for folder in Path(path).parents:
        if not folder.parts:
            break
        stem = re.sub(r"[\d._-]+$", "", folder.name).lower()
        d = Path(root) / folder
        found += [str(folder / h.name) for h in sorted(d.glob("*.h"))
                  if stem and h.stem.lower() == stem and str(folder / h.name) != path]
    return found


def file_contexts(path: str, text: str, root: str | None = None) -> list[tuple[str, str]]:
    """(kind, text compiled before the file) to try, in order; see the module docstring."""
    standard = "\n".join(STANDARD_INCLUDES) + "\n"
    contexts = [("alone", ""), ("standard headers", standard)]
    directives = [(m.group(1), m.group(2)) for m in _DIRECTIVE.finditer(text)]
    parents: list[str] = []
    tested: list[str] = []
    for i, (name, arg) in enumerate(directives):
        if name != "error":
            continue
        parents += [h for h in _HEADER_NAME.findall(arg) if not path.endswith(h) and h not in parents]
        if i > 0 and directives[i - 1][0] in ("if", "ifndef", "elif"):
            cond_name, cond = directives[i - 1]
            names = cond.split()[:1] if cond_name == "ifndef" else _TESTED_MACRO.findall(cond)
            tested += [n for n in names if n not in tested]
    guard = own_include_guard(text)

    def including(header: str) -> str:
        """``header`` read first, with this file's own guard defined meanwhile (not read twice)."""
        if guard:
            return f"#define {guard} 1\n#include <{header}>\n#undef {guard}\n"
        return f"#include <{header}>\n"

    contexts += [("public header", including(h)) for h in parents]
    defines = "".join(f"#define {n} 1\n" for n in tested)
    if defines:
        contexts.append(("guard macros", defines + standard))
    contexts += [("library header", defines + standard + including(h)) for h in umbrella_headers(path, root)]
    return contexts


def _run_gcc(source: str, include_dirs: Sequence[str], mode: str = "-fsyntax-only",
             timeout: float = 20.0) -> subprocess.CompletedProcess[bytes] | None:
    """gcc ``mode`` (``-fsyntax-only`` or ``-E``) of ``source`` as gnu11 C; None on a timeout."""
    gcc = require_gcc()
    fd, name = tempfile.mkstemp(suffix=".c", prefix="seqlab_compile_")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
            f.write(source)
        args = [gcc, mode, "-std=gnu11", "-w", "-x", "c", *(f"-I{d}" for d in include_dirs), name]
        try:
            return subprocess.run(args, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return None
    finally:
        os.unlink(name)


def active_functions(
    prefix: str, text: str, starts: Sequence[int], include_dirs: Sequence[str]
) -> list[bool]:
    """Whether the preprocessor reads each position ``starts`` of ``text`` (after ``prefix``),
    found with one ``gcc -E`` of the file with a marker line inserted at each."""
    pieces, last = [], 0
    for i, start in enumerate(sorted(starts)):
        pieces += [text[last:start], f"\nseqlab_function_marker_{i}\n"]
        last = start
    pieces.append(text[last:])
    done = _run_gcc(prefix + "".join(pieces), include_dirs, mode="-E")
    out = done.stdout.decode("utf-8", "replace") if done is not None and done.returncode == 0 else ""
    order = {s: i for i, s in enumerate(sorted(starts))}
    return [re.search(rf"\bseqlab_function_marker_{order[s]}\b", out) is not None for s in starts]


def choose_held_out_functions(
    files: Iterable[tuple[str, str, str]], limit: int, root: str | None = None
) -> HeldOutFunctions:
    """Prompts from the first lines (signature and first body line) of functions defined in
    ``files`` ((source, path, text) triples, read lazily in order), at most ``limit``, one
    per file first; each in its file's context (see the module docstring). Files are read
    until ``limit`` files contribute a prompt or they run out."""
    chosen = HeldOutFunctions()
    per_file: list[list[CompilePrompt]] = []
    sources: list[str] = []
    for source, path, text in files:
        if len(per_file) >= limit:
            break
        chosen.files_read += 1
        spans = _function_spans(text)
        if not spans:
            continue
        chosen.files_with_functions += 1
        # the file's folder and each folder above it up to the root: a header included as
        # "project/x.h" from inside the tree is found from one of them
        dirs = tuple(str(Path(root) / d) for d in Path(path).parents) if root else ()
        context = next(
            ((kind, prefix) for kind, prefix in file_contexts(path, text, root)
             if compile_source(prefix + text + "\n", dirs)),
            None,
        )
        if context is None:
            chosen.excluded_files += 1
            chosen.excluded_functions += len(spans)
            continue
        kind, prefix = context
        active = active_functions(prefix, text, [a for a, _, _ in spans], dirs)
        found = []
        incs = includes_of(text)
        for (start, body_start, stop), live in zip(spans, active):
            if not live:
                chosen.excluded_functions += 1
                continue
            first_body_line = text.find("\n", body_start)
            second = text.find("\n", first_body_line + 1)
            prompt = text[start : second + 1 if second > 0 else body_start]
            found.append(CompilePrompt("held-out function", prompt, incs, dirs, text[start:stop] + "\n",
                                       prefix + text[:start]))
        if found:
            per_file.append(found)
            sources.append(source)
            chosen.contexts[kind] = chosen.contexts.get(kind, 0) + 1
    rank = 0
    while len(chosen.prompts) < limit and any(rank < len(f) for f in per_file):
        for f, source in zip(per_file, sources):
            if rank < len(f) and len(chosen.prompts) < limit:
                chosen.prompts.append(f[rank])
                chosen.sources[source] = chosen.sources.get(source, 0) + 1
        rank += 1
    return chosen


def held_out_functions(
    files: Sequence[tuple[str, str]], limit: int, root: str | None = None
) -> list[CompilePrompt]:
    """:func:`choose_held_out_functions` of ``files`` ((path, text) pairs): the prompts alone."""
    return choose_held_out_functions((("held out", p, t) for p, t in files), limit, root).prompts


def void_name_prefix(texts: Sequence[str]) -> str:
    """The most common name prefix (up to and including the first ``_``, else 3 letters) of
    the ``void`` functions in ``texts``; ``"init"`` when there is none."""
    prefixes: Counter[str] = Counter()
    for t in texts:
        for m in _VOID_NAME.finditer(t):
            name = m.group(1)
            cut = name.find("_", 1)
            prefixes[name[: cut + 1] if 0 < cut < 12 else name[:3]] += 1
    return prefixes.most_common(1)[0][0] if prefixes else "init"


def fixed_prompts(void_prefix: str) -> list[CompilePrompt]:
    """The original project's prompts, compiled with the standard C headers."""
    texts = list(FIXED_PROMPTS) + [f"void {void_prefix}"]
    families = ("int main() {", "// Calculate the nth prime number", "void <corpus prefix>")
    return [CompilePrompt(f, t, STANDARD_INCLUDES) for f, t in zip(families, texts)]


def require_gcc() -> str:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise FileNotFoundError(
            "the compile rate needs a C compiler: gcc (apt-get install gcc) not found on PATH"
        )
    return gcc


def open_conditionals(code: str) -> int:
    """How many ``#if``/``#ifdef``/``#ifndef`` of ``code`` have no ``#endif`` in it."""
    opened = len(_CONDITIONAL_OPEN.findall(code))
    return max(opened - len(_CONDITIONAL_CLOSE.findall(code)), 0)


def finish_completion(prompt: str, completion: str) -> str:
    """Prompt + completion, without the completion's unfinished last line when it did not
    end a function (it stopped at the token limit)."""
    if not closes_function(prompt + completion) and "\n" in completion:
        completion = completion[: completion.rfind("\n") + 1]
    return prompt + completion


def compile_source(source: str, include_dirs: Sequence[str] = (), timeout: float = 20.0) -> bool:
    """Whether ``source`` passes ``gcc -fsyntax-only -std=gnu11`` with ``include_dirs``."""
    done = _run_gcc(source, include_dirs, timeout=timeout)
    return done is not None and done.returncode == 0


def compiles(prompt: CompilePrompt, body: str, timeout: float = 20.0) -> bool:
    """Whether the prompt's includes and preamble, then the balanced ``body``, pass
    ``gcc -fsyntax-only -std=gnu11``."""
    if prompt.preamble:
        head = prompt.preamble
    else:
        head = "\n".join(prompt.includes) + "\n"
    source = head + balance_braces(body) + "\n#endif\n" * open_conditionals(prompt.preamble)
    return compile_source(source, prompt.include_dirs, timeout)
