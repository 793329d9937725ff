"""Compile rate: do generated C snippets pass ``gcc -fsyntax-only``?

A snippet (prompt + completion) is closed by balancing its braces (cut where a ``}``
has no ``{`` to close, ``}`` appended for every one left open; braces inside comments,
strings and character literals do not count; a completion that stopped at the token
limit first loses its unfinished last line) and checked with ``gcc -fsyntax-only
-std=gnu11`` after the standard C headers (fixed prompts) or, for a held-out function,
after the text of its file before it: the headers the file included and its own
declarations (conditionals left open there are closed after the snippet). Prompts: the
original project's (``int main() {``, ``// Calculate the nth prime number``, ``void`` +
the most common name prefix of the training corpus' ``void`` functions) and the first
lines of held-out functions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
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


def held_out_functions(
    files: Sequence[tuple[str, str]], limit: int, root: str | None = None
) -> list[CompilePrompt]:
    """Prompts from the first lines (signature and first body line) of functions defined in
    ``files`` ((path, text) pairs), at most ``limit``, one per file first."""
    per_file: list[list[CompilePrompt]] = []
    for path, text in files:
        found = []
        incs = includes_of(text)
        # the file's folder and each folder above it up to the root: a header included as
        # "project/x.h" from inside the tree is found from one of them
        dirs = tuple(str(Path(root) / d) for d in Path(path).parents) if root else ()
        for m in _FUNCTION.finditer(text):
            if m.group(1) in _KEYWORDS:
                continue
            body_start = m.end()
            depth, end = brace_depth_end(text[body_start:])
            if end >= len(text) - body_start or depth:  # unbalanced
                continue
            function = text[m.start() : body_start + end + 1]
            if function.count("\n") < 2 or len(function) > 4000:
                continue
            first_body_line = text.find("\n", body_start)
            second = text.find("\n", first_body_line + 1)
            prompt = text[m.start() : second + 1 if second > 0 else body_start]
            found.append(
                CompilePrompt("held-out function", prompt, incs, dirs, function + "\n", text[: m.start()])
            )
        if found:
            per_file.append(found)
    prompts: list[CompilePrompt] = []
    rank = 0
    while len(prompts) < limit and any(rank < len(f) for f in per_file):
        prompts += [f[rank] for f in per_file if rank < len(f)][: limit - len(prompts)]
        rank += 1
    return prompts


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


def compiles(prompt: CompilePrompt, body: str, timeout: float = 20.0) -> bool:
    """Whether the prompt's includes and preamble, then the balanced ``body``, pass
    ``gcc -fsyntax-only -std=gnu11``."""
    if prompt.preamble:
        head = prompt.preamble
    else:
        head = "\n".join(prompt.includes) + "\n"
    source = head + balance_braces(body) + "\n#endif\n" * open_conditionals(prompt.preamble)
    gcc = require_gcc()
    fd, name = tempfile.mkstemp(suffix=".c", prefix="seqlab_compile_")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
            f.write(source)
        args = [gcc, "-fsyntax-only", "-std=gnu11", "-w", "-x", "c"]
        args += [f"-I{d}" for d in prompt.include_dirs]
        try:
            done = subprocess.run(args + [name], capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0
    finally:
        os.unlink(name)
