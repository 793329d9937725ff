"""Poetry baselines, the uncentred token cosine and the vocabulary loss, against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from seqlab.autograd import tensor
from seqlab.models.poetry.baselines import (
    LinearAutoencoder,
    evaluate_baselines,
    mean_vector,
    most_frequent_token,
    shortfalls,
)
from seqlab.models.poetry.dataset import center_and_normalize
from seqlab.models.poetry.evaluate import score_reconstructions
from seqlab.models.poetry.loss import batch_vocabulary_loss, vocabulary_loss


def corpus(rng: np.random.Generator, n: int, vocab: int = 30, max_len: int = 6) -> list[np.ndarray]:
    return [rng.integers(1, vocab, size=int(rng.integers(2, max_len + 1))).astype(np.int64) for _ in range(n)]


def padded(chunks: list[np.ndarray], embedding: np.ndarray, max_len: int) -> np.ndarray:
    x = np.zeros((len(chunks), max_len, embedding.shape[1]), np.float64)
    for i, c in enumerate(chunks):
        x[i, : len(c)] = embedding[c]
    return x.reshape(len(chunks), -1)


def test_linear_autoencoder_is_pca_of_the_padded_sequences(rng: np.random.Generator) -> None:
    embedding = rng.standard_normal((30, 4)).astype(np.float32)
    embedding[0] = 0
    train, test = corpus(rng, 70), corpus(rng, 9)
    linear = LinearAutoencoder(components=3, max_len=6, block=16).fit(train, embedding, seed=1)
    x = padded(train, embedding, 6)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis = vt[:3].T
    y = padded(test, embedding, 6)
    expected = ((y - mean) @ basis @ basis.T + mean).reshape(len(test), 6, 4)
    got = linear.reconstruct(test, embedding)
    assert [g.shape for g in got] == [(len(c), 4) for c in test]
    for g, e, c in zip(got, expected, test):
        np.testing.assert_allclose(g, e[: len(c)], atol=2e-4)


def test_trivial_baselines_by_brute_force(rng: np.random.Generator) -> None:
    train = [np.array([3, 5, 3, 0][:3]), np.array([5, 3, 7])]
    assert most_frequent_token(train) == 3
    embedding = rng.standard_normal((8, 5)).astype(np.float32)
    expected_mean = embedding[[3, 5, 3, 5, 3, 7]].mean(0)
    np.testing.assert_allclose(mean_vector(train, embedding), expected_mean, atol=1e-6)
    test = [np.array([3, 1, 3, 3]), np.array([2, 3])]
    result = evaluate_baselines(train, test, embedding, bottleneck=2, max_len=4)
    assert set(result) == {"most_frequent_token", "mean_vector", "linear_autoencoder"}
    mft = result["most_frequent_token"]
    assert mft["token_id"] == 3 and mft["tokens"] == 6 and mft["chunks"] == 2
    assert mft["word_top1"] == pytest.approx(4 / 6)
    mean = mean_vector(train, embedding)
    truth = embedding[np.concatenate(test)]
    cos = truth @ mean / (np.linalg.norm(truth, axis=1) * np.linalg.norm(mean))
    assert result["mean_vector"]["token_cosine"] == pytest.approx(cos.mean(), abs=1e-5)
    # not centred: the uncentred token cosine is the token cosine itself
    assert result["mean_vector"]["token_cosine_uncentred"] is None  # centred, and no way back given
    plain = evaluate_baselines(train, test, embedding, bottleneck=2, max_len=4, centred=False)
    assert plain["mean_vector"]["token_cosine_uncentred"] == plain["mean_vector"]["token_cosine"]


def test_uncentred_token_cosine(rng: np.random.Generator) -> None:
    raw = rng.standard_normal((12, 6)).astype(np.float32) + 3.0  # a large common direction
    raw[0] = 0
    embedding, uncentring = center_and_normalize(raw, with_uncentring=True)
    ids = np.arange(1, 12)
    np.testing.assert_allclose(uncentring.words(embedding, ids), raw[ids], rtol=1e-5, atol=1e-5)
    chunks = [ids[:5], ids[5:]]
    preds = [0.5 * embedding[c] + 0.1 for c in chunks]
    scores = score_reconstructions(preds, chunks, embedding, uncentring)
    scale = np.linalg.norm(raw[1:] - raw[1:].mean(0), axis=1).mean()
    back = np.concatenate(preds) * scale + raw[1:].mean(0)
    expected = (back * raw[ids]).sum(1) / (np.linalg.norm(back, axis=1) * np.linalg.norm(raw[ids], axis=1))
    assert scores["token_cosine_uncentred"] == pytest.approx(expected.mean(), abs=1e-5)
    # the mean vector scores far higher on the uncentred vectors than on the centred ones
    mean = evaluate_baselines(chunks, chunks, embedding, 2, 6, uncentring)["mean_vector"]
    assert mean["token_cosine_uncentred"] > 0.8 > mean["token_cosine"] + 0.5


def test_shortfalls_name_the_baseline() -> None:
    baselines = {"most_frequent_token": {"word_top1": 0.07, "token_cosine": 0.1},
                 "mean_vector": {"word_top1": 0.0, "token_cosine": 0.19},
                 "linear_autoencoder": {"word_top1": 0.069, "token_cosine": 0.199}}
    notes = shortfalls({"word_top1": 0.058, "token_cosine": 0.192}, baselines)
    assert notes == ["word_top1 0.058 is not above most_frequent_token's 0.070",
                     "word_top1 0.058 is not above linear_autoencoder's 0.069",
                     "token_cosine 0.192 is not above linear_autoencoder's 0.199"]
    assert shortfalls({"word_top1": 0.2, "token_cosine": 0.3}, baselines) == []


def test_batch_vocabulary_loss_matches_torch(rng: np.random.Generator, torch) -> None:
    embedding = rng.standard_normal((20, 8)).astype(np.float32)
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    embedding[0] = 0
    ids = np.array([[3, 7, 7, 0], [12, 3, 19, 5]], dtype=np.int64)
    pred_np = rng.standard_normal((2, 4, 8)).astype(np.float32)
    pred = tensor(pred_np, requires_grad=True)
    loss = batch_vocabulary_loss(pred, ids, embedding, temperature=0.5)
    loss.backward()
    words = np.unique(ids[ids > 0])
    tp = torch.tensor(pred_np, requires_grad=True)
    logits = tp @ torch.tensor(embedding[words]).T / 0.5
    target = torch.tensor(np.where(ids > 0, np.searchsorted(words, ids), -100))
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, len(words)), target.reshape(-1),
                                                 ignore_index=-100)
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    np.testing.assert_allclose(pred.grad, tp.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert not pred.grad[0, 3].any()  # padding contributes nothing


def test_vocabulary_loss_matches_torch_over_every_word(rng: np.random.Generator, torch) -> None:
    embedding = rng.standard_normal((20, 8)).astype(np.float32)
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    embedding[0] = 0
    ids = np.array([[3, 7, 7, 0], [12, 3, 19, 1]], dtype=np.int64)
    pred_np = rng.standard_normal((2, 4, 8)).astype(np.float32)
    pred = tensor(pred_np, requires_grad=True)
    loss = vocabulary_loss(pred, ids, embedding, temperature=0.25)
    loss.backward()
    tp = torch.tensor(pred_np, requires_grad=True)
    logits = tp @ torch.tensor(embedding[1:]).T / 0.25  # every word but padding
    target = torch.tensor(np.where(ids > 0, ids - 1, -100))
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 19), target.reshape(-1),
                                                 ignore_index=-100)
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    np.testing.assert_allclose(pred.grad, tp.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert not pred.grad[0, 3].any()  # padding contributes nothing
    # words absent from the batch are candidates too: the loss exceeds the batch softmax's
    assert loss.item() > batch_vocabulary_loss(tensor(pred_np), ids, embedding, temperature=0.25).item()


def test_linear_path_starts_at_the_pca(rng: np.random.Generator) -> None:
    from seqlab.models.poetry import SequenceAutoencoder, preset

    embedding = rng.standard_normal((30, 4)).astype(np.float32)
    embedding[0] = 0
    train, test = corpus(rng, 50), corpus(rng, 5)
    linear = LinearAutoencoder(components=3, max_len=6).fit(train, embedding)
    config = preset("tiny", embedding_dim=4, hidden_size=8, bottleneck=3, max_len=6, linear_path=True)
    model = SequenceAutoencoder(config, 4)
    # a scale far above the codes' spread keeps the tanh linear: the path is the PCA itself
    scale = 1e4 * float(linear.code_std[0])
    model.init_linear_path(linear.mean, linear.basis, scale)
    assert 0 < np.abs(model.to_code.weight.data).max() < 0.01  # the recurrent path starts small
    model.to_code.weight.data[...] = 0.0  # and here is switched off, to see the linear path alone
    x = np.zeros((len(test), 6, 4), np.float32)
    for i, c in enumerate(test):
        x[i, : len(c)] = embedding[c]
    code, _ = model.encode(tensor(x), np.array([len(c) for c in test]))
    rec = model.linear_decoder(code).data.reshape(len(test), 6, 4)
    for r, e, c in zip(rec, linear.reconstruct(test, embedding), test):
        np.testing.assert_allclose(r[: len(c)], e, atol=1e-3)
    with pytest.raises(ValueError, match=r"basis \(24, 2\).*expected \(24, 3\)"):
        model.init_linear_path(linear.mean, linear.basis[:, :2], scale)


def test_recurrent_code_share_scales_the_recurrent_encoders_start(rng: np.random.Generator) -> None:
    from seqlab.models.poetry import SequenceAutoencoder, preset
    from seqlab.random import manual_seed

    embedding = rng.standard_normal((30, 4)).astype(np.float32)
    embedding[0] = 0
    linear = LinearAutoencoder(components=3, max_len=6).fit(corpus(rng, 50), embedding)
    starts = {}
    for share in (0.01, 0.5, 1.0):
        manual_seed(0)
        config = preset("tiny", embedding_dim=4, hidden_size=8, bottleneck=3, max_len=6, linear_path=True,
                        recurrent_code_share=share)
        model = SequenceAutoencoder(config, 4)
        initial = model.to_code.weight.data.copy()
        model.init_linear_path(linear.mean, linear.basis, 1.0)
        starts[share] = model.to_code.weight.data.copy()
        np.testing.assert_allclose(starts[share], share * initial, rtol=1e-6)
    np.testing.assert_allclose(starts[0.5], 50 * starts[0.01], rtol=1e-5)
    with pytest.raises(ValueError, match="recurrent_code_share must be >= 0, got -1"):
        preset("tiny", recurrent_code_share=-1)


def test_min_steps_raise_the_epochs_of_a_small_corpus() -> None:
    from seqlab.models.poetry import preset

    config = preset("tiny", epochs=4, min_steps=100)
    assert config.epochs_for(2) == 50  # 4 epochs of 2 steps would be 8 steps
    assert config.epochs_for(69) == 4
    with pytest.raises(ValueError, match="min_steps must be a non-negative integer"):
        preset("tiny", min_steps=-1)
