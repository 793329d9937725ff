"""Scale limits (``benchmarks/bench_scale.py``): peak memory of long and large runs
against their bounds (memory only, never time), and the chunked reading of memory-mapped
banks that keeps top-k's memory bounded."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from seqlab.metrics import target_rank, topk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_scale import run_case, write_bank, write_poems  # noqa: E402


@pytest.mark.parametrize("mode", ["r", "r+", "c"])
def test_memory_mapped_banks_read_in_chunks_give_the_in_memory_results(tmp_path, monkeypatch, mode):
    import seqlab.metrics.retrieval as retrieval

    monkeypatch.setattr(retrieval, "_CHUNK_BYTES", 1 << 16)  # many chunks, pages released after each
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((3000, 40)).astype(np.float32)
    path = tmp_path / "bank.f32"
    bank.tofile(path)
    q = rng.standard_normal((25, 40)).astype(np.float32)
    for offset, rows in ((0, 3000), (160, 2999)):  # a map that starts mid-page too
        mm = np.memmap(path, dtype=np.float32, mode=mode, shape=(rows, 40), offset=offset)
        ref = bank.reshape(-1)[offset // 4 :].reshape(rows, 40)
        for metric in ("cosine", "ip", "l2"):
            s, i = topk(q, mm, 7, metric)
            s_ref, i_ref = topk(q, ref, 7, metric)
            np.testing.assert_array_equal(i, i_ref)
            np.testing.assert_allclose(s, s_ref, rtol=1e-6)
        np.testing.assert_array_equal(target_rank(q, np.arange(25), mm), target_rank(q, np.arange(25), ref))
        np.testing.assert_array_equal(np.asarray(mm), ref)  # released pages read back the file's values
    if mode == "r+":  # a change not yet flushed survives its pages being released
        mm = np.memmap(path, dtype=np.float32, mode="r+", shape=(3000, 40))
        mm[2500] = 100.0
        topk(q, mm, 3)
        assert (mm[2500] == 100.0).all()
        del mm
        assert (np.fromfile(path, dtype=np.float32).reshape(3000, 40)[2500] == 100.0).all()


@pytest.mark.slow
def test_recurrent_over_10000_steps_stays_within_its_memory_bound():
    r = run_case("recurrent", steps=10_000)
    assert r["ok"], r


@pytest.mark.slow
def test_memory_mapped_topk_keeps_peak_rss_under_a_quarter_of_the_bank(tmp_path):
    rows, dim = 300_000, 768  # 0.86 GiB (the script measures 1M x 768, 2.9 GiB)
    write_bank(tmp_path / "bank.f32", rows, dim)
    r = run_case("topk", bank=str(tmp_path / "bank.f32"), rows=rows, dim=dim)
    assert r["ok"], r


@pytest.mark.slow
def test_poetry_corpus_loads_and_batches_within_its_memory_bound(tmp_path):
    corpus, vectors = write_poems(tmp_path, 20_000)
    r = run_case("poems", corpus=str(corpus), vectors=str(vectors))
    assert r["ok"], r
