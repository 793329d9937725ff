"""The next-vector model starts from a fixed mix of the last vectors, chosen on validation
(the copy-last baseline when nothing better is found), with a delta head near zero; the
untrained model is scored as epoch 0, so a run whose epochs all score worse keeps it."""

from __future__ import annotations

import numpy as np
import pytest

from seqlab.autograd import no_grad, tensor
from seqlab.data.vector_chains import VectorChains
from seqlab.data.vector_windows import padded_windows, window_spans
from seqlab.models.vectors.baselines import copy_last, unit_rows
from seqlab.models.vectors.config import VectorPredictorConfig, preset
from seqlab.models.vectors.evaluate import retrieval_scores
from seqlab.models.vectors.mix import MEAN_WEIGHTS, PREVIOUS_WEIGHTS, choose_mix, mix_predictions
from seqlab.models.vectors.model import MIX_FEATURES, NextVectorModel
from seqlab.recipes.vectors import VectorPredictor, _mix_text, vector_predictor


def _random_walks(seed: int = 0) -> VectorChains:
    """Chains that drift slowly: the next vector is the last plus a little noise, so
    copy-last is close to the best one can do."""
    rng = np.random.default_rng(seed)
    chains = []
    for _ in range(80):
        n = int(rng.integers(10, 20))
        steps = np.cumsum(0.15 * rng.standard_normal((n, 16)), axis=0) + rng.standard_normal(16)
        chains.append(unit_rows(steps).astype(np.float32))
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in chains])])
    return VectorChains(np.concatenate(chains), offsets, [f"walk {i}" for i in range(80)], "random walks")


def _model(context: int = 4, dim: int = 6, mix: tuple[float, float] = (0.0, 0.0)) -> NextVectorModel:
    m = NextVectorModel(VectorPredictorConfig(context=context, hidden_size=8), dim)
    m.mix[:] = mix
    m.eval()
    return m


def test_mix_features_are_the_previous_vector_and_the_window_mean(rng) -> None:
    m = _model(context=4)
    x = rng.standard_normal((2, 7, 6)).astype(np.float32)
    f = m.mix_features(x)
    assert f.shape == (2, 7, len(MIX_FEATURES), 6)
    for t in range(7):
        want_prev = x[:, t - 1] if t else np.zeros_like(x[:, 0])
        np.testing.assert_allclose(f[:, t, 0], want_prev)
        np.testing.assert_allclose(f[:, t, 1], x[:, max(0, t - 3) : t + 1].mean(axis=1), rtol=1e-5, atol=1e-6)


def test_untrained_model_is_copy_last_and_the_mix_adds_its_features(rng) -> None:
    x = unit_rows(rng.standard_normal((3 * 5, 6))).reshape(3, 5, 6).astype(np.float32)
    with no_grad():
        untrained = _model().forward(tensor(x)).data
        np.testing.assert_allclose(unit_rows(untrained.reshape(-1, 6)), x.reshape(-1, 6), atol=1e-3)
        m = _model()
        y0 = m.forward(tensor(x)).data
        m.mix[:] = (0.3, -0.2)
        f = m.mix_features(x)
        np.testing.assert_allclose(m.forward(tensor(x)).data - y0, 0.3 * f[:, :, 0] - 0.2 * f[:, :, 1],
                                   atol=1e-5)


def test_mix_predictions_match_the_model_and_choose_mix_takes_the_grid_best(rng) -> None:
    chains = _random_walks()
    starts, targets = window_spans(chains, 4)
    m = _model(context=4, dim=16, mix=(0.2, -0.1))
    m.head.weight.data[:] = 0.0  # the mix alone
    windows, lengths = padded_windows(chains.vectors, starts[:50], targets[:50])
    with no_grad():
        got = unit_rows(m.predict_last(windows, lengths))
    np.testing.assert_allclose(got, mix_predictions(chains.vectors, starts[:50], targets[:50], (0.2, -0.1)),
                               atol=1e-5)
    weights, chosen = choose_mix(chains, 4)
    assert weights in [(a, b) for a in PREVIOUS_WEIGHTS for b in MEAN_WEIGHTS]
    brute = max(
        (retrieval_scores(mix_predictions(chains.vectors, starts, targets, (a, b)), targets, chains.vectors)
         for a in PREVIOUS_WEIGHTS for b in MEAN_WEIGHTS),
        key=lambda r: r["hit@5"] + r["mrr"],
    )
    assert chosen["hit@5"] + chosen["mrr"] == pytest.approx(brute["hit@5"] + brute["mrr"])
    assert chosen["hit@5"] + chosen["mrr"] >= chosen["copy_last_hit@5"] + chosen["copy_last_mrr"]
    copy = retrieval_scores(copy_last(chains.vectors, starts, targets), targets, chains.vectors)
    assert (chosen["copy_last_hit@5"], chosen["copy_last_mrr"]) == pytest.approx((copy["hit@5"], copy["mrr"]))


def test_stream_and_cold_prediction_agree_past_the_context(rng) -> None:
    m = _model(context=4, mix=(0.4, 0.7))
    predictor = VectorPredictor(m, m.config)
    chain = unit_rows(rng.standard_normal((9, 6))).astype(np.float32)
    stream = predictor.stream()
    for t in range(len(chain)):
        cold = predictor.predict_next(chain[max(0, t - 3) : t + 1])
        np.testing.assert_allclose(stream.step(chain[t]), cold, atol=2e-5)


@pytest.mark.slow
def test_a_run_whose_epochs_all_score_worse_keeps_the_untrained_model(tmp_path) -> None:
    """A rate far too high wrecks every epoch; the run ends at the untrained model (the
    mix chosen on validation, the head near zero) instead of at the least bad wrecked epoch."""
    p = vector_predictor(_random_walks(), out=tmp_path / "run", hidden_size=16, lr=0.5,
                         lr_schedule="constant", epochs=2, patience=2, verbose=False, progress=False)
    assert len(p.history) == 2
    e = p.evaluate()
    weights, _ = choose_mix(p.data.splits["val"], p.config.context)
    np.testing.assert_allclose(p.model.mix, weights, rtol=1e-6)
    assert p.best_epoch == 0 and weights != (0.0, 0.0)
    np.testing.assert_array_equal(VectorPredictor.load(p.run_dir).model.mix, p.model.mix)
    assert np.abs(p.model.head.weight.data).max() < 1e-3  # as initialised
    test = p.data.splits["test"]
    starts, targets = window_spans(test, p.config.context)
    mixed = retrieval_scores(mix_predictions(test.vectors, starts, targets, weights), targets, test.vectors)
    assert e["model"]["hit@5"] == pytest.approx(mixed["hit@5"], abs=0.01)
    assert e["model"]["mrr"] == pytest.approx(mixed["mrr"], abs=0.01)


def test_the_original_preset_and_runs_saved_before_have_no_mix() -> None:
    assert VectorPredictorConfig().mix and not preset("original").mix
    assert not VectorPredictorConfig.from_dict({"hidden_size": 32}).mix
    assert VectorPredictorConfig.from_dict(VectorPredictorConfig().to_dict()).mix


def test_the_console_names_the_mix() -> None:
    assert _mix_text(np.array([0.1, -0.2], np.float32)) == "last + 0.1 x previous - 0.2 x context mean"
    assert _mix_text((0.0, 0.0)) == "last + 0 x previous + 0 x context mean"
