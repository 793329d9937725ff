"""The compile rate's held-out functions: each checked in the context its file is compiled
in (a header that refuses direct inclusion, a library's internal header), files that
compile in no context and functions the preprocessor skips left out and counted, and the
files a capped corpus left unread used as further held-out files."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from seqlab.data.source_files import read_source_files
from seqlab.models.code_lm.compile_check import (
    choose_held_out_functions,
    compile_source,
    compiles,
    file_contexts,
    own_include_guard,
    umbrella_headers,
)
from seqlab.models.code_lm.config import preset_config
from seqlab.models.code_lm.evaluate import CompilePrompts, compile_rate, held_out_files, unread_files

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc")

# glibc style: the public header declares the type, then includes the bits/ header, which
# refuses direct inclusion and uses that type
PUBLIC = """#ifndef MYLIB_H
#define MYLIB_H
typedef struct { int x, y; } my_point;
#include <mylib/bits/point_ops.h>
#endif
"""
BITS = """#ifndef MYLIB_H
# error "Never include <mylib/bits/point_ops.h> directly; use <mylib/mylib.h> instead."
#endif
#ifndef MYLIB_BITS_POINT_OPS_H
#define MYLIB_BITS_POINT_OPS_H
static inline int my_point_sum(my_point p)
{
    return p.x + p.y;
}
#ifdef MYLIB_NEVER_DEFINED
static inline int my_skipped(my_point p)
{
    return p.x;
}
#endif
#define MY_MACRO(n) \\
int my_macro_##n(void) {    \\
    return n;               \\
}
#endif
"""
# an internal header of a library whose public header is named after its folder
INTERNAL = """#ifndef LIBQ_INTERNAL_H
#define LIBQ_INTERNAL_H
static inline q_size q_twice(q_size v)
{
    return 2 * v;
}
#endif
"""
BROKEN = """#include "missing/config.h"
static int broken(void)
{
    return CONFIG_VALUE;
}
"""


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    files = {
        "mylib/mylib.h": PUBLIC,
        "mylib/bits/point_ops.h": BITS,
        "libq3/libq.h": "#include <stddef.h>\ntypedef size_t q_size;\n",
        "libq3/internal/twice.h": INTERNAL,
        "broken.c": BROKEN,
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_a_guarded_header_is_checked_after_its_public_header(tree: Path) -> None:
    root = str(tree)
    assert own_include_guard(BITS) == "MYLIB_BITS_POINT_OPS_H" and own_include_guard(BROKEN) is None
    # on its own the header does not compile: its guard refuses it, and the type is elsewhere
    dirs = [str(tree / "mylib/bits"), str(tree / "mylib"), root]
    assert not compile_source(BITS, dirs)
    kinds = [k for k, _ in file_contexts("mylib/bits/point_ops.h", BITS, root)]
    assert kinds[:3] == ["alone", "standard headers", "public header"] and "guard macros" in kinds
    chosen = choose_held_out_functions([("test", "mylib/bits/point_ops.h", BITS)], 10, root)
    (fn,) = chosen.prompts  # the skipped #ifdef branch and the macro body are not functions to complete
    assert fn.text.startswith("static inline int my_point_sum(my_point p)\n{\n")
    assert chosen.contexts == {"public header": 1} and chosen.excluded_functions == 1
    assert fn.preamble.startswith("#define MYLIB_BITS_POINT_OPS_H 1\n#include <mylib/mylib.h>\n#undef ")
    assert compiles(fn, fn.reference)  # the upper bound is reachable
    assert compiles(fn, fn.text + "return p.y;")  # closed by balancing
    assert not compiles(fn, fn.text + "return p.z;")  # no member z: the check still bites
    assert not compiles(fn, fn.text + "return p.x +;\n}")


def test_internal_headers_broken_files_and_counts(tree: Path) -> None:
    root = str(tree)
    assert umbrella_headers("libq3/internal/twice.h", root) == ["libq3/libq.h"]
    files = [("test", "broken.c", BROKEN), ("val", "libq3/internal/twice.h", INTERNAL),
             ("unread", "mylib/bits/point_ops.h", BITS), ("unread", "mylib/mylib.h", PUBLIC)]
    chosen = choose_held_out_functions(files, 2, root)
    # two files give a prompt, so the last file is not read; broken.c compiles in no context
    assert chosen.files_read == 3 and chosen.files_with_functions == 3 and chosen.excluded_files == 1
    assert chosen.excluded_functions == 1 + 1  # broken() and the skipped my_skipped()
    assert chosen.sources == {"val": 1, "unread": 1}
    assert chosen.contexts == {"library header": 1, "public header": 1}
    assert all(compiles(p, p.reference) for p in chosen.prompts)
    q = chosen.prompts[0]
    assert q.text.startswith("static inline q_size q_twice") and not compiles(q, q.text + "return v->x;")
    # the rate: the truth passes in every family's context; the other families are judged the same way
    rate = compile_rate(CompilePrompts(chosen.prompts, chosen), 1,
                        lambda p, n: ["return 0;\n}\n"] * n, lambda p, n: ["return v +;\n}\n"] * n)
    assert rate["true"] == {"pass": 1.0, "n": 2}
    assert rate["model"] == {"pass": 1.0, "n": 2} and rate["ngram"] == {"pass": 0.0, "n": 2}
    assert rate["held_out"]["excluded_files"] == 1 and "fewer than 200" in rate["note"]


def test_a_capped_corpus_lends_its_unread_files(tree: Path) -> None:
    config = preset_config("tiny", max_total_bytes=200, seed=0)
    corpus = read_source_files(tree, config.extensions, config.max_file_bytes, config.max_total_bytes)
    assert corpus.skipped["over_total_cap"] > 0
    read = {f.path for f in corpus.files}
    unread = list(unread_files(corpus, config))
    everything = {str(p.relative_to(tree)) for p in tree.rglob("*.[ch]")}
    assert {path for _, path, _ in unread} == everything - read and not read & {p for _, p, _ in unread}
    assert {source for source, _, _ in unread} == {"unread (over the corpus cap)"}

    # the held-out files of a run: the split's, the other held-out split's, then the unread ones
    data = SimpleNamespace(corpus=corpus, splits={"train": [], "val": [], "test": corpus.files})
    order = [source for source, _, _ in held_out_files(data, "test", config)]  # type: ignore[arg-type]
    assert order == ["test"] * len(read) + ["unread (over the corpus cap)"] * len(unread)
    # an uncapped corpus has nothing unread
    full = read_source_files(tree, config.extensions, config.max_file_bytes, 10_000)
    assert list(unread_files(full, config)) == []
