"""Code data: tokens that join back to the code, bug injection, mining, JSONL pairs and
their errors, the split by file, pointer-generator ids and batches."""

from __future__ import annotations

import difflib
import io
import json
import sysconfig
import textwrap
import tokenize
from pathlib import Path

import numpy as np
import pytest

from seqlab.data.code import (
    BUG_CLASSES,
    CodeBatches,
    CodeDataError,
    CodePair,
    CodeSplits,
    add_training_pairs,
    build_code_vocabulary,
    check_no_leakage,
    decode_ids,
    encode_pairs,
    enumerate_edits,
    inject_bug,
    load_code_data,
    mine_code,
    mine_completions,
    mine_file,
    parses,
    read_pairs_jsonl,
    split_by_file,
    tokenize_code,
)
from seqlab.data.code.bugs import _ARITH, _BOOLEAN, _COMPARISON
from seqlab.data.code.lexers import c_lexemes, c_syntax_errors
from seqlab.data.code.tokens import core
from seqlab.data.code.units import bug_units, functions

STDLIB = Path(sysconfig.get_paths()["stdlib"])
C_SNIPPET = """/* Sum of the first n squares. */
static long
sum_squares (const int *v, int n)
{
  long total = 0;
  int i;
  for (i = 0; i < n; i++)
    {
      if (v[i] > 0 && !skip (v, i))
        total += (long) v[i] * v[i];
    }
  return total;
}

int
clamp (int x, int lo, int hi)
{
  if (x < lo)
    return lo;
  return x > hi ? hi : x;
}
"""


def _headers(n: int) -> list[Path]:
    out = []
    for p in sorted(Path("/usr/include").glob("*.h")):
        if len(out) >= n:
            break
        out.append(p)
    return out


@pytest.mark.parametrize("name", ["textwrap.py", "bisect.py", "tokenize.py", "json/decoder.py"])
def test_python_round_trip_on_stdlib_files(name):
    code = (STDLIB / name).read_text(encoding="utf-8")
    toks = tokenize_code(code, "python")
    assert "".join(toks) == code
    # the lexemes are exactly tokenize's (layout aside)
    ref = [
        t.string
        for t in tokenize.generate_tokens(io.StringIO(code).readline)
        if t.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
    ]
    assert [core(t) for t in toks if t.strip() not in ("", "\\")] == ref


def test_c_round_trip_on_system_headers():
    headers = _headers(12)
    if not headers:
        pytest.skip("no C headers in /usr/include")
    for h in headers:
        code = h.read_text(encoding="utf-8", errors="replace")
        assert "".join(tokenize_code(code, "c")) == code, h


@pytest.mark.parametrize(
    "code,lang",
    [
        ("x = 1\r\ny = 2\r\n", "python"),
        ("if a:\n\tb = 1  \n\n\n\tc = (1 +\n\t     2)\n", "python"),
        ("x = 1 + \\\n    2", "python"),
        ('s = f"{a!r:>10}" + b"\\x00"\n', "python"),
        ("#define MAX(a,b) ((a) > (b) ? (a) : (b))\nint x\t= 0x1fUL;   /* c */\n", "c"),
        ('char *s = "a\\"b"; char c = \'\\n\';  // end', "c"),
        ("/* unterminated", "c"),
    ],
)
def test_round_trip_of_layout(code, lang):
    assert "".join(tokenize_code(code, lang)) == code


def test_tokens_keep_indentation_and_single_spaces():
    toks = tokenize_code("def f(a, b):\n    return a <= b\n", "python")
    assert toks == ["def", " f", "(", "a", ",", " b", ")", ":", "\n    ", "return", " a", " <=", " b", "\n"]


def test_c_lexer_classes_and_errors():
    kinds = [k for _, _, k in c_lexemes("a->b <<= 0x1fu; /* x */ \"s\" 'c' // e")]
    assert kinds == [
        "identifier",
        "punct",
        "identifier",
        "punct",
        "number",
        "punct",
        "block_comment",
        "string",
        "char",
        "line_comment",
    ]
    assert c_syntax_errors(C_SNIPPET) == []
    assert c_syntax_errors("int f() {\n  if (x] \n}") == ["line 2: ']' closes '(' opened on line 2"]
    assert c_syntax_errors("a /* b") == ["line 1: unterminated comment"]
    assert c_syntax_errors('x = "abc\\";') == ["line 1: unterminated string literal"]
    assert c_syntax_errors("f(x") == ["line 1: '(' never closed"]


def test_python_tokenise_error_names_line():
    with pytest.raises(ValueError, match=r"line 2: Python source does not tokenise"):
        tokenize_code('x = 1\ny = """abc\n', "python")


def _units() -> list[tuple[list[str], str]]:
    code = (STDLIB / "textwrap.py").read_text(encoding="utf-8")
    units = [(u, "python") for f in functions(code, "python") for u in bug_units(f, "python", 100)]
    units += [(u, "c") for f in functions(C_SNIPPET, "c") for u in bug_units(f, "c", 100)]
    return [(tokenize_code(u, lang), lang) for u, lang in units]


def _check_edit_class(kind: str, old: list[str], new: list[str], lang: str) -> None:
    o, n = [core(t) for t in old if t.strip()], [core(t) for t in new if t.strip()]
    if kind in ("binary_operator", "comparison", "boolean_operator"):
        groups = {
            "binary_operator": _ARITH[lang],
            "comparison": [_COMPARISON],
            "boolean_operator": [_BOOLEAN[lang]],
        }
        assert len(o) == len(n) == 1 and any(o[0] in g and n[0] in g for g in groups[kind]) and o != n
    elif kind == "off_by_one":
        assert len(o) == len(n) == 1
        digits = [int("".join(ch for ch in x if ch.isdigit())) for x in (o[0], n[0])]
        assert abs(digits[0] - digits[1]) == 1
    elif kind == "variable_misuse":
        assert len(o) == len(n) == 1 and o[0] != n[0] and n[0].isidentifier()
    elif kind == "swapped_arguments":
        assert sorted(o) == sorted(n) and o != n
    elif kind == "negation":
        neg = "not" if lang == "python" else "!"
        assert (n == [neg, *o]) or (o == [neg, *n])
    else:
        raise AssertionError(kind)


def test_mutants_parse_and_differ_by_one_edit_of_their_class():
    rng = np.random.default_rng(0)
    seen = set()
    n = 0
    for toks, lang in _units():
        for _ in range(3):
            bug = inject_bug(toks, lang, rng)
            if bug is None:
                continue
            mutant, edit = bug
            assert edit.kind in BUG_CLASSES
            assert parses("".join(mutant), lang)
            assert "".join(mutant) != "".join(toks)
            ops = [
                op
                for op in difflib.SequenceMatcher(a=toks, b=mutant, autojunk=False).get_opcodes()
                if op[0] != "equal"
            ]
            assert edit.apply(toks) == mutant
            assert ops[0][1] >= edit.start and ops[-1][2] <= edit.end  # one contiguous edit
            _check_edit_class(edit.kind, toks[edit.start : edit.end], list(edit.replacement), lang)
            seen.add((lang, edit.kind))
            n += 1
    assert n > 100
    assert {k for lang, k in seen if lang == "python"} == set(BUG_CLASSES)
    assert len({k for lang, k in seen if lang == "c"}) >= 4


def test_edits_are_closed_under_undoing():
    rng = np.random.default_rng(1)
    undone = total = 0
    for toks, lang in _units():
        bug = inject_bug(toks, lang, rng)
        if bug is None or bug[1].kind == "variable_misuse":
            continue  # a misused variable's only use may be gone from the mutant
        total += 1
        original = "".join(toks)
        undone += any("".join(e.apply(bug[0])) == original for e in enumerate_edits(bug[0], lang))
    assert total > 20 and undone == total


def test_mined_pairs(tmp_path):
    src = tmp_path / "sums.c"
    src.write_text(C_SNIPPET)
    pairs = mine_file(src, max_len=100, seed=0) + mine_file(STDLIB / "textwrap.py", max_len=100, seed=0)
    tasks = {p.task for p in pairs}
    assert tasks == {"bug_fix", "completion", "generation"}
    for p in pairs:
        assert len(p.source_tokens) <= 100 and len(p.target_tokens) <= 100
        if p.task == "bug_fix":
            assert p.source != p.target and parses(p.source, p.lang) and parses(p.target, p.lang)
        elif p.task == "completion":
            assert "\n" not in p.target and p.source.endswith("\n")
            fn = next(
                f for f in functions(Path(p.file).read_text(), p.lang) if (p.source + p.target) in f.text
            )
            assert fn.text.startswith(p.source)
        else:
            fn_text = p.source + p.target
            assert any(
                f.text == fn_text or p.target in f.text for f in functions(Path(p.file).read_text(), p.lang)
            )
    gen_c = [p for p in pairs if p.task == "generation" and p.lang == "c"]
    assert gen_c and gen_c[0].source.startswith("/* Sum of the first n squares. */")
    assert gen_c[0].target.rstrip().endswith("return total;\n}")


def test_long_function_gives_statement_windows():
    code = "def f(x):\n" + "".join(f"    y{i} = x + {i}\n" for i in range(60)) + "    return y0\n"
    fn = functions(code, "python")[0]
    units = bug_units(fn, "python", 50)
    assert len(units) > 1
    for u in units:
        assert len(tokenize_code(u, "python")) <= 50 and parses(u, "python") and not u[0].isspace()


def test_bug_fix_unit_length_and_mutants_per_unit():
    code = "def f(x, y):\n" + "".join(f"    y{i} = x + y * {i}\n" for i in range(8)) + "    return y0 - y1\n"
    assert 30 < len(tokenize_code(code, "python")) <= 100
    whole = mine_code(code, "python", "f.py", ("bug_fix",), max_len=100, seed=0)
    assert [p.target for p in whole] == [code]  # the function fits: it is the unit
    short = mine_code(code, "python", "f.py", ("bug_fix",), max_len=100, seed=0, unit_len=30)
    assert len(short) > 1
    for p in short:
        assert len(p.target_tokens) <= 30 and parses(p.target, "python")
        assert textwrap.indent(p.target, "    ") in code  # a window of statements, dedented
    many = mine_code(code, "python", "f.py", ("bug_fix",), max_len=100, seed=0, unit_len=30, mutants=3)
    by_unit: dict[str, set[str]] = {}
    for p in many:
        by_unit.setdefault(p.target, set()).add(p.source)
        assert p.source != p.target and parses(p.source, "python")
    assert set(by_unit) == {p.target for p in short}
    assert all(len(s) == 3 for s in by_unit.values())  # three distinct mutants of every unit
    assert len(many) == 3 * len(by_unit)
    # the first mutant of each unit is the one a single-mutant run draws
    assert many[0].source == short[0].source


def test_source_file_errors(tmp_path):
    (tmp_path / "empty.py").write_text("")
    with pytest.raises(CodeDataError, match="empty.py: the file is empty"):
        mine_file(tmp_path / "empty.py")
    (tmp_path / "blob.c").write_bytes(b"int x;\0\1\2")
    with pytest.raises(CodeDataError, match="blob.c: binary file"):
        mine_file(tmp_path / "blob.c")
    (tmp_path / "bad.py").write_text("def f(:\n    pass\n")
    with pytest.raises(CodeDataError, match=r"bad.py: line 1: Python source does not parse"):
        load_code_data(tmp_path / "bad.py")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CodeDataError, match="unknown source suffix"):
        mine_file(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="missing: no such file"):
        load_code_data(tmp_path / "missing")
    # a folder skips what it cannot use and names it
    (tmp_path / "good.py").write_text((STDLIB / "bisect.py").read_text())
    corpus = load_code_data(tmp_path)
    assert corpus.files == 4 and {Path(f).name for f, _ in corpus.skipped} == {"empty.py", "blob.c", "bad.py"}
    assert {p.file for p in corpus.pairs} == {"good.py"}


def _write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_jsonl_pairs_and_errors(tmp_path):
    good = {"task": "bug_fix", "source": "x = a < b\n", "target": "x = a <= b\n", "file": "m.py"}
    pairs = read_pairs_jsonl(
        _write_jsonl(tmp_path / "ok.jsonl", [good, "", {**good, "lang": "c", "extra": 1}])
    )
    assert [p.lang for p in pairs] == ["python", "c"] and pairs[1].line == 3 and pairs[1].meta == {"extra": 1}
    cases = [
        ({"task": "bug_fix", "source": "x"}, r"line 2: missing field 'target'"),
        ({**good, "task": "refactor"}, r"line 2: field 'task': unknown task 'refactor'"),
        ({**good, "lang": "rust"}, r"line 2: field 'lang': unknown language 'rust'"),
        ({**good, "source": 3}, r"line 2: field 'source' must be a string"),
        ("{not json", r"line 2: not valid JSON"),
        ({**good, "lang": "python", "source": 'x = """abc\n'}, r"line 2: does not tokenise as python"),
    ]
    for bad, message in cases:
        with pytest.raises(CodeDataError, match=message):
            read_pairs_jsonl(_write_jsonl(tmp_path / "bad.jsonl", [good, bad]))
    frag = {**good, "lang": "python", "source": "x = (a <\n"}
    with pytest.raises(CodeDataError, match=r"line 2: does not tokenise as python"):
        read_pairs_jsonl(_write_jsonl(tmp_path / "bad.jsonl", [good, frag]))
    frag = {**good, "lang": "python", "source": "x = a <\n"}
    assert len(read_pairs_jsonl(_write_jsonl(tmp_path / "frag.jsonl", [good, frag]))) == 2
    with pytest.raises(CodeDataError, match=r"frag.jsonl, line 2: field 'source' does not parse as python"):
        read_pairs_jsonl(tmp_path / "frag.jsonl", require_parse=True)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(CodeDataError, match="empty.jsonl: the file is empty"):
        read_pairs_jsonl(tmp_path / "empty.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b'{"task": \0}')
    with pytest.raises(CodeDataError, match="bin.jsonl: binary file"):
        read_pairs_jsonl(tmp_path / "bin.jsonl")
    with pytest.raises(CodeDataError, match="unknown task 'fix'"):
        load_code_data(tmp_path / "ok.jsonl", task="fix")
    with pytest.raises(CodeDataError, match="unknown language 'go'"):
        load_code_data(tmp_path / "ok.jsonl", lang="go")


def _pair(file: str, i: int, task: str = "bug_fix") -> CodePair:
    return CodePair(task, "python", f"x = {i} < y\n", f"x = {i} <= y\n", file, i)


def test_split_by_file_has_no_overlap_and_removes_duplicates():
    pairs = [_pair(f"f{k}.py", i) for k in range(20) for i in range(k, k + 5)]
    splits = split_by_file(pairs, seed=3)
    files = [{p.file for p in part} for _, part in splits.items()]
    assert not (files[0] & files[1]) and not (files[0] & files[2]) and not (files[1] & files[2])
    keys = [{p.key() for p in part} for _, part in splits.items()]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    kept = sum(len(part) for _, part in splits.items())
    assert kept == len({p.key() for p in pairs}) == len(pairs) - sum(splits.duplicates_removed.values())
    leak = CodeSplits([_pair("a.py", 1)], [_pair("a.py", 2)], [])
    with pytest.raises(ValueError, match="file 'a.py' has pairs in both the 'train' and 'val' splits"):
        check_no_leakage(leak)
    leak = CodeSplits([_pair("a.py", 1)], [], [_pair("b.py", 1)])
    with pytest.raises(ValueError, match="same bug_fix pair .* both the 'train' and 'test' splits"):
        check_no_leakage(leak)


def test_more_completion_cut_points_in_training_files_only(tmp_path):
    for name in ("textwrap.py", "shlex.py", "glob.py", "bisect.py", "fnmatch.py", "colorsys.py"):
        (tmp_path / name).write_text((STDLIB / name).read_text())
    corpus = load_code_data(tmp_path, lang="python", max_len=100, seed=0)
    assert corpus.mined and corpus.root == tmp_path
    splits = split_by_file(corpus.pairs, fractions=(0.5, 0.25, 0.25), seed=0)
    train_files = {p.file for p in splits.train}
    more = mine_completions(corpus, train_files, 1000)  # every cut point
    assert more and {p.task for p in more} == {"completion"} and {p.file for p in more} <= train_files
    # every cut point includes the miner's 2 per function
    assert {p.key() for p in splits.train if p.task == "completion"} <= {p.key() for p in more}
    added = add_training_pairs(splits, more)
    assert added.val == splits.val and added.test == splits.test  # the held-out pairs as they were
    assert added.added_to_train == len(added.train) - len(splits.train) > 0
    assert len({p.key() for p in added.train}) == len(added.train)
    check_no_leakage(added)  # no file and no pair on two sides
    # a pair identical to a held-out one is not added; a pair of a held-out file is refused
    held = splits.test[0]
    twin = CodePair(held.task, held.lang, held.source, held.target, sorted(train_files)[0], 1)
    assert add_training_pairs(splits, [twin]).added_to_train == 0
    with pytest.raises(ValueError, match=f"{held.file!r} .* is not a training file"):
        add_training_pairs(splits, [held])
    # pairs read from JSON Lines are not mined again
    given = [{"task": p.task, "lang": p.lang, "source": p.source, "target": p.target}
             for p in splits.train[:3]]
    assert mine_completions(load_code_data(given), train_files, 9) == []


def test_extended_vocabulary_ids_and_batches():
    train = [CodePair("bug_fix", "python", "y = a + b\n", "y = a - b\n", "t.py")] * 3
    vocab = build_code_vocabulary(train, min_count=1)
    assert vocab.itos[:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    v = len(vocab)
    test = [
        CodePair("bug_fix", "python", "y = rare_name + other\n", "y = rare_name - unseen\n", "u.py"),
        CodePair("bug_fix", "python", "y = a + b\n", "y = a - b\n", "u.py", 2),
    ]
    enc = encode_pairs(test, vocab, max_source=16, max_target=16)
    assert enc.oovs[0] == [" rare_name", " other"] and enc.oovs[1] == []
    assert enc.src_ids.dtype == np.int64 and enc.src_ids.max() < v  # vocabulary ids never extended
    assert enc.tgt_in.max() < v
    row = enc.src_ext[0, : enc.src_len[0]]
    assert list(row[row >= v]) == [v, v + 1]
    # target: rare_name copied (extended id v), unseen token neither in vocab nor source -> <unk>
    toks = test[0].target_tokens
    out = enc.tgt_out[0, : enc.tgt_len[0]]
    assert out[toks.index(" rare_name")] == v and out[toks.index(" unseen")] == 1 and out[len(toks)] == 3
    # decoder inputs: token t's vocabulary id at t (read at step t + 1), no <s> in front
    assert enc.tgt_in[0, 0] == vocab.stoi["y"] and enc.tgt_in[0, toks.index(" rare_name")] == 1
    assert enc.tgt_in[0, len(toks)] == 0
    assert "".join(decode_ids(enc.tgt_out[1], vocab, enc.oovs[1])) == test[1].target
    assert "".join(decode_ids(enc.src_ext[0], vocab, enc.oovs[0])) == test[0].source
    batches = list(CodeBatches(enc, batch_size=2, shuffle=True).batches(np.random.default_rng(0)))
    (b,) = batches
    assert b.src_ids.shape == (2, int(enc.src_len.max())) and b.tgt_out.shape == (2, int(enc.tgt_len.max()))
    assert b.max_oov == 2 and all(x.dtype == np.int64 for x in (b.src_ids, b.src_ext, b.tgt_in, b.tgt_out))
    np.testing.assert_array_equal(b.src_ext, enc.src_ext[b.indices, : b.src_ids.shape[1]])


def test_code_batches_bucket_by_target_length():
    lines = [f"x{i} = {i}\n" for i in range(6)]
    lines += ["".join(f"y{i}{j} = y{j}\n" for j in range(9)) for i in range(6)]
    pairs = [CodePair("completion", "python", "def f():\n", t, "t.py", i) for i, t in enumerate(lines)]
    pairs = [pairs[i] for i in np.random.default_rng(1).permutation(len(pairs))]  # mixed lengths
    enc = encode_pairs(pairs, build_code_vocabulary(pairs, min_count=1), 8, 60)
    batches = list(CodeBatches(enc, batch_size=6, shuffle=True).batches(np.random.default_rng(0)))
    # same source length: the one-line and the nine-line targets never share a batch
    assert sorted(len(set(enc.tgt_len[b.indices])) for b in batches) == [1, 1]
    assert sum(b.tgt_out.size for b in batches) == int(enc.tgt_len.sum())  # no padded target step


def test_long_pairs_truncated_and_counted_or_refused():
    vocab = build_code_vocabulary([_pair("a.py", 1)], min_count=1)
    long = CodePair("bug_fix", "python", "x = " + " + ".join("a" * 30) + "\n", "x = 1\n", "l.py", 7)
    enc = encode_pairs([long, _pair("a.py", 1)], vocab, max_source=10, max_target=10)
    assert enc.truncated_source == 1 and enc.truncated_target == 0 and enc.src_len[0] == 10
    with pytest.raises(ValueError, match=r"l.py, line 7: bug_fix pair of \d+ source and 4 target tokens"):
        encode_pairs([long], vocab, max_source=10, max_target=10, on_long="error")


@pytest.mark.slow
def test_default_corpus_is_the_machines_own_code():
    corpus = load_code_data(None, max_files={"python": 6, "c": 30}, seed=1)
    assert corpus.source.startswith("default corpus: 6 Python standard-library files")
    langs = {p.lang for p in corpus.pairs}
    assert "python" in langs
    for p in corpus.pairs:
        assert p.file.startswith(str(STDLIB)) or p.file.startswith(
            ("/usr/include", "/usr/local/include", "/usr/src")
        )
        assert "/test/" not in p.file and "/site-packages/" not in p.file
    splits = split_by_file(corpus.pairs, seed=1)
    check_no_leakage(splits)
    assert len(splits.train) > len(splits.test) > 0


def test_gcc_check_keeps_mutants_that_still_compile(tmp_path):
    from seqlab.data.code import gcc_syntax_ok

    code = "struct pt { int x; };\nint skip (const int *v, int i);\n" + C_SNIPPET
    if gcc_syntax_ok(code) is not True:
        pytest.skip("gcc not installed, or the snippet does not compile here")
    (tmp_path / "sums.c").write_text(code)
    pairs = [p for p in mine_file(tmp_path / "sums.c", tasks=("bug_fix",), gcc=True) if p.task == "bug_fix"]
    assert pairs
    for p in pairs:
        assert gcc_syntax_ok(code.replace(p.target, p.source, 1)) is True
    assert gcc_syntax_ok(code.replace("return total;", "return total +;")) is False


def test_cap_pairs_per_task():
    from seqlab.data.code.corpus import cap_pairs

    pairs = [CodePair(t, "python", f"x = {i}\n", f"x = {i + 1}\n", f"f{i % 3}.py", i)
             for t in ("bug_fix", "completion") for i in range(10)]
    capped = cap_pairs(pairs, {"bug_fix": 4}, seed=0)
    assert sum(p.task == "bug_fix" for p in capped) == 4 and sum(p.task == "completion" for p in capped) == 10
    assert [pairs.index(p) for p in capped] == sorted(pairs.index(p) for p in capped)  # file order kept
    assert len(cap_pairs(pairs, 3, seed=0)) == 6
    # one task's count does not move another task's subset
    fewer = [p for p in pairs if not (p.task == "bug_fix" and p.line > 5)]
    completions = [p for p in cap_pairs(pairs, 3, seed=0) if p.task == "completion"]
    assert completions == [p for p in cap_pairs(fewer, 3, seed=0) if p.task == "completion"]
