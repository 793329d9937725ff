"""Vector chains: loading, quality gates, leak-free splits, windows, documents and encoders."""

from __future__ import annotations

import numpy as np
import pytest

from seqlab.data.chain_gates import apply_quality_gates, chain_coherence
from seqlab.data.documents import documents_from_folder, python_docs, split_chunks
from seqlab.data.synthetic_chains import synthetic_chains
from seqlab.data.vector_chains import (
    VectorChains,
    check_disjoint,
    load_vector_chains,
    split_chains,
)
from seqlab.data.vector_windows import SegmentBatches, padded_windows, window_spans


def _chains(rng, lengths=(8, 3, 10), dim=4):
    return [rng.standard_normal((n, dim)).astype(np.float32) for n in lengths]


# ------------------------------------------------------------------ loading
def test_npz_with_offsets_and_with_ids_round_trip(tmp_path, rng):
    arrays = _chains(rng)
    chains = load_vector_chains(arrays)
    assert len(chains) == 3 and chains.dim == 4 and list(chains.lengths) == [8, 3, 10]
    path = chains.save(tmp_path / "c.npz")
    back = load_vector_chains(path)
    np.testing.assert_array_equal(back.vectors, chains.vectors)
    np.testing.assert_array_equal(back.offsets, chains.offsets)
    assert back.names == chains.names
    ids = np.repeat([7, 3, 9], [8, 3, 10])
    np.savez(tmp_path / "ids.npz", vectors=chains.vectors, chain_ids=ids)
    by_ids = load_vector_chains(tmp_path / "ids.npz")
    np.testing.assert_array_equal(by_ids.offsets, [0, 8, 11, 21])
    np.testing.assert_array_equal(by_ids.chain(2), arrays[2])


@pytest.mark.parametrize(
    "bad, message",
    [
        ([np.zeros((3, 4)), np.zeros((2, 5))], "chain 1 has vectors of dimension 5, chain 0 has 4"),
        ([np.zeros((3, 4)), np.zeros(4)], r"chain 1 must be a \(length, dim\) array"),
        ([], "no chains given"),
    ],
)
def test_bad_arrays_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        load_vector_chains(bad)


def test_nan_vector_is_named(rng):
    arrays = _chains(rng)
    arrays[2][4, 1] = np.nan
    with pytest.raises(ValueError, match=r"vector 4 of chain 2"):
        load_vector_chains(arrays)


def test_npz_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_vector_chains(tmp_path / "missing.npz")
    np.savez(tmp_path / "novec.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="no 'vectors' array"):
        load_vector_chains(tmp_path / "novec.npz")
    np.savez(tmp_path / "nooff.npz", vectors=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="needs 'chain_offsets' or 'chain_ids'"):
        load_vector_chains(tmp_path / "nooff.npz")
    np.savez(tmp_path / "badoff.npz", vectors=np.zeros((3, 2)), chain_offsets=np.array([0, 2, 5]))
    with pytest.raises(ValueError, match="must rise from 0 to the number of vectors"):
        load_vector_chains(tmp_path / "badoff.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_vector_chains(tmp_path / "junk.npz")


def test_damaged_npz_member_is_a_named_error(tmp_path, rng):
    """A member damaged inside a valid archive surfaces only when read (zipfile's BadZipFile
    or zlib's error before the fix); it is a ValueError naming the file."""
    path = tmp_path / "damaged.npz"
    np.savez_compressed(path, vectors=rng.standard_normal((50, 8)), chain_offsets=np.array([0, 20, 50]))
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 3
    raw[middle : middle + 40] = bytes(40)  # inside the first member's compressed data
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"damaged\.npz: damaged \.npz archive"):
        load_vector_chains(path)


# -------------------------------------------------------------------- gates
def test_gates_report_what_they_remove(rng):
    a, b, c = _chains(rng, (9, 8, 6))
    b[3] = a[2]            # a duplicate of an earlier vector
    b[5] = 0.0             # an all-zero vector
    chains = load_vector_chains([a, b, c])
    kept, report = apply_quality_gates(chains, min_length=7)
    assert report.duplicate_vectors == 1 and report.zero_vectors == 1
    assert report.short_chains == 2  # b fell to 6 vectors, c had 6
    assert report.chains_out == 1 and report.vectors_out == 9
    assert kept.names == ["chain 0"]
    assert "1 duplicate vectors" in report.summary() and "2 chains shorter than 7" in report.summary()


def test_coherence_gate_matches_brute_force(rng):
    smooth = np.cumsum(rng.standard_normal((10, 6)) * 0.1, axis=0) + 1.0
    noisy = rng.standard_normal((10, 6))
    chains = load_vector_chains([smooth, noisy])
    unit = [c / np.linalg.norm(c, axis=1, keepdims=True) for c in (smooth, noisy)]
    expected = [np.mean(np.sum(u[:-1] * u[1:], axis=1)) for u in unit]
    np.testing.assert_allclose(chain_coherence(chains), expected, rtol=1e-5)
    threshold = (expected[0] + expected[1]) / 2
    kept, report = apply_quality_gates(chains, coherence=threshold)
    assert kept.names == ["chain 0"] and report.incoherent_chains == 1


def test_gates_refuse_to_leave_nothing(rng):
    with pytest.raises(ValueError, match="no chain passed the quality gates"):
        apply_quality_gates(load_vector_chains(_chains(rng, (3, 4))), min_length=7)


# ------------------------------------------------------------------- splits
def test_split_is_by_chain_and_disjoint():
    chains = synthetic_chains(chains=50, length=12, dim=4)
    splits = split_chains(chains, (0.8, 0.1, 0.1), seed=3)
    assert [len(s) for s in splits.values()] == [40, 5, 5]
    names = [set(s.names) for s in splits.values()]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert sum(s.num_vectors for s in splits.values()) == chains.num_vectors


def test_disjoint_check_catches_a_chain_on_two_sides():
    chains = synthetic_chains(chains=6, length=8, dim=4)
    with pytest.raises(ValueError, match=r"'synthetic 1' is in both the 'train' and 'test' splits"):
        check_disjoint({"train": chains.subset([0, 1, 2]), "test": chains.subset([1, 3])})
    renamed = chains.subset([0])
    copy = VectorChains(renamed.vectors, renamed.offsets, ["other name"], "copy")
    with pytest.raises(ValueError, match="same content"):
        check_disjoint({"train": renamed, "val": copy})


# ------------------------------------------------------------------ windows
def test_window_spans_hold_the_last_context_vectors():
    chains = load_vector_chains([np.arange(12, dtype=np.float32).reshape(6, 2),
                                 np.arange(8, dtype=np.float32).reshape(4, 2)])
    starts, targets = window_spans(chains, context=3)
    np.testing.assert_array_equal(targets, [1, 2, 3, 4, 5, 7, 8, 9])
    np.testing.assert_array_equal(starts, [0, 0, 0, 1, 2, 6, 6, 6])
    windows, lengths = padded_windows(chains.vectors, starts, targets)
    np.testing.assert_array_equal(lengths, [1, 2, 3, 3, 3, 1, 2, 3])
    np.testing.assert_array_equal(windows[3], chains.vectors[1:4])
    assert not windows[5, 1:].any()


def test_segments_cover_every_window_once(rng):
    chains = load_vector_chains(_chains(rng, (9, 25, 4)))
    source = SegmentBatches(chains, context=7, segments_per_batch=2)
    assert source.num_samples == 8 + 24 + 3
    for generator in (None, np.random.default_rng(5)):
        seen = []
        for batch in source.batches(generator):
            flat = batch.inputs.reshape(-1, chains.dim)
            assert batch.lengths.max() <= 7
            # the input at each scored position is the vector just before its target
            np.testing.assert_array_equal(flat[batch.positions], chains.vectors[batch.targets - 1])
            seen += list(batch.targets)
        assert sorted(seen) == sorted(window_spans(chains, 7)[1])


# ---------------------------------------------------------- text to chains
def test_split_chunks_paragraphs_and_sentences():
    text = ("One two three four five.\n\nShort.\n  \n"
            "Six seven eight nine ten. Eleven twelve thirteen fourteen fifteen!")
    assert split_chunks(text) == ["One two three four five.",
                                  "Six seven eight nine ten. Eleven twelve thirteen fourteen fifteen!"]
    assert split_chunks(text, "sentence")[-1] == "Eleven twelve thirteen fourteen fifteen!"
    with pytest.raises(ValueError, match="unit"):
        split_chunks(text, "word")


def test_documents_from_folder(tmp_path):
    (tmp_path / "a.md").write_text("alpha beta gamma delta epsilon\n\nzeta eta theta iota kappa")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("one two three four five")
    (tmp_path / "skip.py").write_text("x = 1")
    docs = documents_from_folder(tmp_path)
    assert [d.name for d in docs] == ["a.md", "sub/b.txt"] and len(docs[0].chunks) == 2


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        documents_from_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .txt or .md files"):
        documents_from_folder(tmp_path / "empty")


def test_python_docs_reads_modules_in_source_order(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text('"""Package docs with enough words here."""\n')
    (tmp_path / "mod.py").write_text(
        '"""First paragraph of the module docs.\n\nSecond paragraph of the module docs."""\n'
        'def f():\n    """The function f has this docstring."""\n'
        'class C:\n    """The class C has this docstring here."""\n'
    )
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "t.py").write_text('"""Tests are not documentation at all."""\n')
    (tmp_path / "broken.py").write_text("def (:\n")
    docs = {d.name: d.chunks for d in python_docs(tmp_path)}
    assert set(docs) == {"mod", "pkg"}  # a file this Python cannot parse is skipped
    assert docs["mod"] == ["First paragraph of the module docs.", "Second paragraph of the module docs.",
                           "The function f has this docstring.", "The class C has this docstring here."]


def test_tfidf_encoder_round_trips_through_its_state():
    pytest.importorskip("sklearn")
    from seqlab.data.text_encoders import TfidfSvdEncoder, encoder_from_state

    chunks = [f"the module {w} reads {v} files and writes {w} output" for w in "abcdefgh" for v in "xyz"]
    enc = TfidfSvdEncoder(dim=8).fit(chunks)
    vecs = enc.encode(chunks)
    assert vecs.shape == (24, 8)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    back = encoder_from_state(*enc.state())
    np.testing.assert_allclose(back.encode(chunks[:5]), vecs[:5], atol=1e-6)
    with pytest.raises(RuntimeError, match="call fit"):
        TfidfSvdEncoder().encode(["x"])
