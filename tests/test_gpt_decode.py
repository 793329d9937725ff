"""The fused incremental step of the GPT decoder (seqlab._core.GptDecoder through
FusedDecoder): its logits against the model's full forward at every position, its cache
against the composable-op cached path, at 1 and 2 threads; sampling through it; bad input."""

from __future__ import annotations

import numpy as np
import pytest

import seqlab
from seqlab import _core
from seqlab.models.code_lm import GPT, FusedDecoder, KVCache, generate_ids, preset_config


def small_model(seed: int = 0, **kw) -> GPT:
    """The small preset's widths (d_model 128, 4 heads, vocabulary 4096, so the tied output
    layer's product is split over the threads) with 2 blocks and 48 positions; weights
    scaled up from the initialisation so the logits spread over several units."""
    cfg = preset_config("small", **{"n_layers": 2, "max_len": 48, "seq_len": 32, **kw})
    seqlab.manual_seed(seed)
    model = GPT(cfg)
    for name, p in model.named_parameters():
        if not name.endswith("bias") and "ln" not in name:
            p.data *= 3.0
    model.eval()
    return model


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_steps_match_the_full_forward_at_every_position(threads):
    """A 20-token prompt in one step (GEMMs, the attention split over the threads), then one
    token per step (the matrix-vector path) up to the last position, for 2 sequences.

    Tolerance: each logit is a float32 dot product of length 128 after two blocks of
    float32 sums of up to 512 terms, taken in another order than the GEMMs of the full
    forward (rounding ~1e-7 relative per term; the largest difference seen is 2e-6 at a
    scale of 3); 2e-5 of the logits' largest magnitude leaves room for that and catches any
    wrong weight, position or cache row (errors of the order of the logits themselves)."""
    model = small_model()
    cfg = model.config
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, cfg.max_len))
    previous = seqlab.get_num_threads()
    seqlab.set_num_threads(threads)
    try:
        ref = model(ids).data  # (2, 48, V)
        decoder = FusedDecoder(model, KVCache(cfg, 2))
        got = {19: decoder.step(ids[:, :20]).copy()}
        for t in range(20, cfg.max_len):
            got[t] = decoder.step(ids[:, t : t + 1]).copy()
    finally:
        seqlab.set_num_threads(previous)
    scale = float(np.abs(ref).max())
    assert scale > 2.0
    for t, logits in got.items():
        np.testing.assert_allclose(logits, ref[:, t], rtol=0, atol=2e-5 * scale, err_msg=f"position {t}")
    assert decoder.cache.length == cfg.max_len
    # the cache holds what the composable-op path (GPT.forward_cached) writes
    plain = KVCache(cfg, 2)
    model.forward_cached(ids, plain)
    for mine, theirs in zip(decoder.cache.keys + decoder.cache.values, plain.keys + plain.values):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)


def test_sampling_with_the_fused_cache_equals_sampling_without():
    """Temperature, top-k, top-p and a stop sequence read the fused step's logits: the same
    generator gives the same rows as re-running the whole sequence each step."""
    model = small_model(seed=1, vocab_size=512, max_len=40)
    prompt = np.random.default_rng(1).integers(1, 512, 6)

    def stop(row: list[int]) -> bool:
        return len(row) >= 3 and row[-1] == row[-3]

    for kw in (
        {"temperature": 0.0},
        {"temperature": 0.9, "top_k": 20},
        {"temperature": 1.2, "top_p": 0.8},
        {"temperature": 1.0, "top_k": 50, "top_p": 0.95, "stop": stop},
    ):
        rows = [
            generate_ids(
                model, prompt, 30, end_id=None, num_samples=3, use_cache=c, rng=np.random.default_rng(7), **kw
            )
            for c in (True, False)
        ]
        assert rows[0] == rows[1], kw
        assert all(len(r) >= 1 for r in rows[0])


def test_bad_input_names_what_is_wrong():
    model = small_model(vocab_size=300, max_len=8, seq_len=8)
    cache = KVCache(model.config, 1)
    decoder = FusedDecoder(model, cache)
    decoder.step([[1, 2, 3]])
    with pytest.raises(ValueError, match="pos: 3 cached positions plus 6 new ones exceed the maximum length"):
        decoder.step(np.ones((1, 6), dtype=np.int64))
    with pytest.raises(ValueError, match=r"ids: token id 300 at flat index 0 is outside \[0, 300\)"):
        decoder.step([[300]])
    with pytest.raises(ValueError, match=r"ids: expected shape \(1, \*\)"):
        decoder.step(np.ones((2, 1), dtype=np.int64))
    with pytest.raises(TypeError, match="ids: expected integer token ids"):
        decoder.step([[1.5]])
    params = {n: p.data for n, p in model.named_parameters()}
    del params["blocks.1.mlp.2.weight"]
    with pytest.raises(KeyError, match="no parameter named 'blocks.1.mlp.2.weight'"):
        _core.GptDecoder(params, cache.keys, cache.values, 4)
    params = {n: p.data for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match=r"key_caches\[1\]: expected shape"):
        _core.GptDecoder(params, [cache.keys[0], cache.keys[1][:, :2].copy()], cache.values, 4)
    with pytest.raises(ValueError, match="n_heads: 3 must be >= 1 and divide d_model 128"):
        _core.GptDecoder(params, cache.keys, cache.values, 3)
