"""Poem loading in every format, tokenising, chunking, vocabulary and word vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seqlab.data.poems import load_poems
from seqlab.data.text import chunk, chunk_all, tokenize
from seqlab.data.vocabulary import Vocabulary
from seqlab.data.word_vectors import fit_word_vectors, load_word_vectors

POEM_A = ["Shall I compare thee to a summer's day?", "Thou art more lovely and more temperate:"]
POEM_B = ["Because I could not stop for Death", "He kindly stopped for me"]


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


@pytest.mark.parametrize(
    ("name", "content", "fmt"),
    [
        (
            "poetrydb.json",
            json.dumps(
                [
                    {"title": "Sonnet 18", "author": "Shakespeare", "lines": POEM_A},
                    {"title": "712", "author": "Dickinson", "lines": POEM_B},
                ]
            ),
            "poetrydb-json",
        ),
        (
            "wrapped.json",
            json.dumps({"poems": [{"lines": POEM_A}, {"text": "\n".join(POEM_B)}]}),
            "json-poems-object",
        ),
        ("strings.json", json.dumps(["\n".join(POEM_A), "\n".join(POEM_B)]), "json-list"),
        ("lists.json", json.dumps([POEM_A, POEM_B]), "json-list"),
        (
            "poems.jsonl",
            json.dumps({"lines": POEM_A}) + "\n\n" + json.dumps("\n".join(POEM_B)) + "\n",
            "json-lines",
        ),
        ("poems.txt", "\n".join(POEM_A) + "\n\n" + "\n".join(POEM_B) + "\n", "text"),
        (
            "poems.fortune",
            "\n".join(POEM_A) + "\n\t\t-- Shakespeare\n%\n" + "\n".join(POEM_B) + "\n%\n",
            "fortune",
        ),
    ],
)
def test_every_format(tmp_path: Path, name: str, content: str, fmt: str) -> None:
    corpus = load_poems(write(tmp_path, name, content))
    assert corpus.format == fmt
    assert [p.lines for p in corpus] == [POEM_A, POEM_B]
    if fmt == "poetrydb-json":
        assert (corpus[0].title, corpus[0].author) == ("Sonnet 18", "Shakespeare")
    if fmt == "fortune":
        assert corpus[0].author == "Shakespeare"


def test_plain_text_with_stanzas_splits_on_double_gaps(tmp_path: Path) -> None:
    text = "a b\n\nc d\n\n\n\ne f\n\ng h\n"
    corpus = load_poems(write(tmp_path, "stanzas.txt", text))
    assert [p.text for p in corpus] == ["a b\n\nc d", "e f\n\ng h"]


def test_skipped_records_are_reported(tmp_path: Path) -> None:
    records = [{"lines": POEM_A}, {"title": "no text"}, 42, {"lines": ["...", "!!"]}, {"lines": []}]
    corpus = load_poems(write(tmp_path, "mixed.json", json.dumps(records)))
    assert len(corpus) == 1
    assert corpus.skipped == [
        ("record 1", "record without 'lines' or text"),
        ("record 2", "int is not a poem record"),
        ("record 3", "no words (only punctuation or symbols)"),
        ("record 4", "empty"),
    ]
    assert "skipped 4 records" in corpus.summary()


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"bad.json, line 3: invalid JSON"):
        load_poems(write(tmp_path, "bad.json", '[\n  {"lines": ["a"]},\n  {"lines": ["b"],,}\n]'))
    with pytest.raises(ValueError, match=r"bad.jsonl, line 2: invalid JSON"):
        load_poems(write(tmp_path, "bad.jsonl", '{"lines": ["a b"]}\n{"lines": ["c"\n'))
    with pytest.raises(ValueError, match="the file is empty"):
        load_poems(write(tmp_path, "empty.txt", "  \n"))
    with pytest.raises(ValueError, match=r"latin1.txt: not valid utf-8 text \(byte 4, line 2\)"):
        load_poems(write(tmp_path, "latin1.txt", b"abc\n\xe9t\xe9\n"))
    with pytest.raises(ValueError, match=r"punct.txt: no poems found .*no words"):
        load_poems(write(tmp_path, "punct.txt", "...!\n\n?? --\n"))
    with pytest.raises(FileNotFoundError, match="missing.json does not exist"):
        load_poems(tmp_path / "missing.json")
    assert len(load_poems(write(tmp_path, "latin1b.txt", "été\n".encode("latin-1")), encoding="latin-1")) == 1


def test_default_corpus() -> None:
    from seqlab.data.poems import DEFAULT_CORPUS

    if not DEFAULT_CORPUS.is_file():
        with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
            load_poems()
        return
    corpus = load_poems()
    assert corpus.format == "fortune" and len(corpus) > 500


def test_real_poems(shared_data: Path) -> None:
    corpus = load_poems(shared_data / "poems.json")
    assert corpus.format == "poetrydb-json" and len(corpus) == 1235
    assert sum(p.author == "William Shakespeare" for p in corpus) > 100


def test_tokenize_and_chunk() -> None:
    assert tokenize("Don't STOP—well-known: “Death”!") == [
        "don't",
        "stop",
        "—",
        "well-known",
        ":",
        "“",
        "death",
        "”",
        "!",
    ]
    toks = [str(i) for i in range(10)]
    assert chunk(toks, 4) == [toks[0:4], toks[4:8], toks[8:10]]
    assert chunk(toks, 4, stride=3) == [toks[0:4], toks[3:7], toks[6:10]]
    assert chunk(toks, 4, min_len=3) == [toks[0:4], toks[4:8]]
    chunks, owners, report = chunk_all([toks, toks[:3]], 4, min_len=3)
    assert owners == [0, 0, 1] and report.kept_tokens == 11 and report.tokens == 13
    assert report.kept_share == pytest.approx(11 / 13)
    with pytest.raises(ValueError, match="stride must be in"):
        chunk(toks, 4, stride=5)


def test_vocabulary() -> None:
    texts = [["b", "a", "a", "c"], ["a", "b", "d"]]
    v = Vocabulary.build(texts, min_count=2)
    assert v.itos == ["<pad>", "<unk>", "a", "b"] and v.counts == [0, 2, 3, 2]
    assert list(v.encode(["a", "zzz", "b"])) == [2, 1, 3]
    assert v.decode([2, 0, 3]) == ["a", "b"]
    assert Vocabulary.from_dict(v.to_dict()).itos == v.itos
    with pytest.raises(ValueError, match="no token occurs at least 5 times"):
        Vocabulary.build(texts, min_count=5)


def test_word_vector_files(tmp_path: Path) -> None:
    glove = write(tmp_path, "g.txt", "the 1 0 0\ncat 0 1 0\ndog 0 0 1\n")
    w2v = write(tmp_path, "w.txt", "2 3\nthe 1 0 0\ncat 0 1 0\n")
    g = load_word_vectors(glove)
    assert g.words == ["the", "cat", "dog"] and g.dim == 3
    assert np.array_equal(load_word_vectors(w2v)["cat"], [0, 1, 0])
    assert load_word_vectors(glove, vocabulary={"dog"}).words == ["dog"]
    v = Vocabulary.build([["the", "the", "cat", "fish"]])
    types, tokens = g.coverage(v)
    assert types == pytest.approx(2 / 3) and tokens == pytest.approx(3 / 4)
    m = g.matrix_for(v)
    assert m.shape == (5, 3) and not m[0].any() and np.array_equal(m[v.stoi["cat"]], [0, 1, 0])
    assert np.linalg.norm(m[v.stoi["fish"]]) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match=r"bad.txt, line 2: 2 values, expected 3"):
        load_word_vectors(write(tmp_path, "bad.txt", "the 1 0 0\ncat 0 1\n"))
    with pytest.raises(ValueError, match=r"nan.txt, line 1: a value is not a number"):
        load_word_vectors(write(tmp_path, "nan.txt", "the 1 x 0\n"))


def test_real_glove(shared_data: Path) -> None:
    g = load_word_vectors(shared_data / "glove.6B.50d.subset.txt")
    assert g.dim == 50 and len(g) == 8453
    unit = g.vectors / np.linalg.norm(g.vectors, axis=1, keepdims=True)
    nearest = np.argsort(-(unit @ unit[g.index["monday"]]))[1:5]
    assert {g.words[i] for i in nearest} <= {"tuesday", "wednesday", "thursday", "friday", "week"}


def test_fitted_vectors_are_reproducible() -> None:
    pytest.importorskip("gensim")
    texts = [tokenize(" ".join(POEM_A + POEM_B))] * 20
    a = fit_word_vectors(texts, dim=16, epochs=3, seed=1)
    b = fit_word_vectors(texts, dim=16, epochs=3, seed=1)
    assert a.words == b.words and np.array_equal(a.vectors, b.vectors) and a.dim == 16
