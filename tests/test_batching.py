"""Batching: seeded order, padding with lengths, bucketing, negatives, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from seqlab.data import ArrayBatches, SequenceBatches, pad_sequences


def test_array_batches_cover_every_sample_once_in_seeded_order() -> None:
    x = np.arange(50, dtype=np.float32)[:, None]
    y = np.arange(50)
    src = ArrayBatches((x, y), batch_size=16)
    assert src.num_batches() == 4
    batches = list(src.batches(np.random.default_rng(3)))
    assert [len(b[0]) for b in batches] == [16, 16, 16, 2]
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen) == list(range(50))
    assert all(np.array_equal(bx[:, 0], by) for bx, by in batches)
    again = list(src.batches(np.random.default_rng(3)))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(batches, again))
    plain = list(ArrayBatches(x, batch_size=16, shuffle=False).batches(None))
    assert np.array_equal(np.concatenate(plain)[:, 0], np.arange(50))


def test_pad_sequences_pads_truncates_and_reports_lengths() -> None:
    seqs = [np.ones((3, 2)), 2 * np.ones((5, 2)), 3 * np.ones((1, 2))]
    padded, lengths = pad_sequences(seqs)
    assert padded.shape == (3, 5, 2) and list(lengths) == [3, 5, 1]
    assert (padded[0, 3:] == 0).all() and (padded[1] == 2).all()
    cut, lengths = pad_sequences(seqs, max_len=4)
    assert cut.shape == (3, 4, 2) and list(lengths) == [3, 4, 1]


def test_bucketing_reduces_padding_and_keeps_every_sequence() -> None:
    rng = np.random.default_rng(0)
    seqs = [np.zeros((int(n),), np.int64) for n in rng.integers(1, 200, 400)]
    plain = SequenceBatches(seqs, batch_size=16, bucket_size=1)
    bucketed = SequenceBatches(seqs, batch_size=16, bucket_size=8)
    waste_plain = plain.padding_fraction(np.random.default_rng(1))
    waste_bucketed = bucketed.padding_fraction(np.random.default_rng(1))
    assert waste_bucketed < 0.15 and waste_bucketed < 0.35 * waste_plain
    idx = np.concatenate([b.indices for b in bucketed.batches(np.random.default_rng(1))])
    assert sorted(idx) == list(range(400))
    for b in bucketed.batches(np.random.default_rng(2)):
        assert b.inputs.shape == (len(b), b.lengths.max())
        assert all(len(seqs[i]) == n for i, n in zip(b.indices, b.lengths))


def test_negatives_come_from_outside_the_batch() -> None:
    seqs = [np.full((4, 1), i, np.float32) for i in range(40)]
    targets = np.arange(40, dtype=np.float32)[:, None]
    src = SequenceBatches(seqs, targets=targets, batch_size=8, negatives=5)
    for b in src.batches(np.random.default_rng(0)):
        assert b.negatives.shape == (len(b), 5, 1)
        assert not set(b.negatives.ravel().astype(int)) & set(b.indices)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        SequenceBatches([np.ones(3), np.ones(0)])
    with pytest.raises(ValueError, match="no sequences"):
        SequenceBatches([])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ArrayBatches(np.ones((3, 1)), batch_size=0)
    with pytest.raises(ValueError, match=r"sequence 1 has shape \(2, 3\), expected \(T, 2\)"):
        pad_sequences([np.ones((2, 2)), np.ones((2, 3))])
    with pytest.raises(ValueError, match="3 targets for 2 sequences"):
        SequenceBatches([np.ones(2), np.ones(3)], targets=np.ones(3))
