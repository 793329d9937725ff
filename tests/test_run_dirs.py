"""Every recipe's run directory: an existing run is refused before any work, with advice that
works in the interface in use; a resumed run trains on the data it recorded (other data only
when asked) and honours epochs; Ctrl-C says where the last checkpoint is and how to resume;
forecast runs hold the same reports as the others and ``seqlab.load`` reads every recipe's run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import seqlab
from seqlab.cli import main
from seqlab.data.byte_bpe import ByteBPETokenizer
from seqlab.data.synthetic_chains import synthetic_chains
from seqlab.data.synthetic_events import synthetic_events
from seqlab.data.vector_chains import VectorChains
from seqlab.recipes.run_dir import DataMismatchError, RunExistsError, TrainingInterrupted
from seqlab.train.forecaster import Forecaster
from seqlab.train.trainer import Trainer
from test_code_lm import write_c_repo

WORDS = "moon night sea wind rose heart love light dark star sky rain song bird tree river stone".split()


def write_poems(path: Path, seed: int = 0, n: int = 30) -> Path:
    rng = np.random.default_rng(seed)
    poems = []
    for _ in range(n):
        start = int(rng.integers(len(WORDS)))
        lines = [" ".join(WORDS[(start + j + k) % len(WORDS)] for j in range(5)) for k in range(3)]
        poems.append({"title": "t", "author": "a", "lines": lines})
    path.write_text(json.dumps(poems))
    return path


def interrupt_at_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Makes training raise KeyboardInterrupt (as Ctrl-C does) when ``epoch`` begins."""
    original = Trainer._train_epoch

    def train_epoch(self: Trainer, e: int) -> float:
        if e == epoch:
            raise KeyboardInterrupt
        return original(self, e)

    monkeypatch.setattr(Trainer, "_train_epoch", train_epoch)


def forbid(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{target} ran before the run directory was checked")

    monkeypatch.setattr(target, fail)


@pytest.fixture
def taken(tmp_path: Path) -> Path:
    run = tmp_path / "taken"
    run.mkdir()
    (run / "notes.txt").write_text("the user's results")
    return run


def test_existing_runs_are_refused_before_any_work(
    taken: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    forbid(monkeypatch, "seqlab.recipes.poetry.prepare")
    forbid(monkeypatch, "seqlab.recipes.vectors.prepare")
    forbid(monkeypatch, "seqlab.data.sources.load_series")
    calls = {
        "poetry_autoencoder": lambda: seqlab.poetry_autoencoder(out=taken),
        "vector_predictor": lambda: seqlab.vector_predictor(out=taken),
        "forecaster": lambda: seqlab.forecaster(out_dir=taken),
    }
    for name, call in calls.items():
        with pytest.raises(FileExistsError, match="already holds a training run") as info:
            call()
        # the advice is a call that works in Python
        assert f"seqlab.{name}(resume={str(taken)!r})" in str(info.value)
    for command in ("poetry", "vectors", "forecast"):
        assert main([command, "--out", str(taken)]) == 1
        err = capsys.readouterr().err
        assert f"seqlab {command} --resume {taken}" in err and "resume=" not in err
        assert "--out" in err and "nothing was overwritten" in err
    assert (taken / "notes.txt").read_text() == "the user's results"


def test_missing_or_malformed_data_leaves_no_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[{not json")
    for data in (tmp_path / "missing.json", bad):
        out = tmp_path / f"run-{data.stem}"
        with pytest.raises((FileNotFoundError, ValueError), match=data.name):
            seqlab.poetry_autoencoder(data, preset="tiny", out=out)
        assert not out.exists()
        assert main(["poetry", str(data), "--preset", "tiny", "--out", str(out)]) == 1
        assert data.name in capsys.readouterr().err and not out.exists()


def test_preset_name_still_works_with_a_deprecation_warning(taken: Path) -> None:
    with pytest.warns(DeprecationWarning, match="use preset="), pytest.raises(RunExistsError):
        seqlab.poetry_autoencoder(out=taken, preset_name="tiny")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        seqlab.poetry_autoencoder(out=taken, preset="huge")


def test_poetry_ctrl_c_then_resume_on_the_recorded_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = write_poems(tmp_path / "poems.json")
    run = tmp_path / "run"
    interrupt_at_epoch(monkeypatch, 2)
    args = ["--preset", "tiny", "--epochs", "2", "--no-progress", "--threads", "1"]
    assert main(["poetry", str(corpus), "--out", str(run), *args]) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert f"the last checkpoint is {run / 'checkpoints' / 'epoch_0001.safetensors'}" in err
    assert err.endswith(f"continue with: seqlab poetry --resume {run}")
    monkeypatch.undo()

    # no corpus given: the run's own, not the default corpus
    assert main(["poetry", "--resume", str(run), "--no-progress", "--threads", "1"]) == 0
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["data"]["path"] == str(corpus.resolve())
    metrics = json.loads((run / "training_metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]

    # --epochs on resume: trains on up to that epoch
    assert main(["poetry", "--resume", str(run), "--epochs", "3", "--no-progress", "--threads", "1"]) == 0
    metrics = json.loads((run / "training_metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]

    other = write_poems(tmp_path / "other.json", seed=1)
    assert main(["poetry", str(other), "--resume", str(run), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"was trained on {corpus.resolve()}, not {other.resolve()}" in err and "--other-data" in err
    with pytest.raises(DataMismatchError, match="other_data=True"):
        seqlab.poetry_autoencoder(other, resume=run)
    with pytest.raises(ValueError, match="only epochs can change on resume.*cell"):
        seqlab.poetry_autoencoder(resume=run, cell="rnn")


def test_vectors_interrupt_in_python_and_resume_on_in_memory_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chains = synthetic_chains(chains=60, length=20, dim=8, rule="rotation", seed=3)
    run = tmp_path / "run"
    fast = {"hidden_size": 16, "epochs": 2, "verbose": False, "progress": False}
    interrupt_at_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt) as info:
        seqlab.vector_predictor(chains, context=6, out=run, **fast)
    assert isinstance(info.value, TrainingInterrupted)
    assert str(info.value).endswith(f"continue with seqlab.vector_predictor(resume={str(run)!r})")
    assert info.value.checkpoint == run / "checkpoints" / "epoch_0001.safetensors"
    monkeypatch.undo()
    with pytest.raises(ValueError, match="in-memory VectorChains .*pass the same data again"):
        seqlab.vector_predictor(resume=run, verbose=False)
    vectors = chains.vectors.copy()
    vectors[0, 0] += 1.0
    changed = VectorChains(vectors, chains.offsets, chains.names, chains.source)
    with pytest.raises(DataMismatchError):
        seqlab.vector_predictor(changed, resume=run, verbose=False)
    fitted = seqlab.vector_predictor(chains, resume=run, verbose=False, progress=False)
    assert [h["epoch"] for h in fitted.history] == [1, 2]
    loaded = seqlab.load(run)
    assert type(loaded).__name__ == "VectorPredictor" and loaded.summary is not None
    window = chains.chain(5)[:6]
    np.testing.assert_array_equal(loaded.predict_next(window), fitted.predict_next(window))


def test_forecast_run_directory_resume_and_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "ev.json"
    events.write_text(json.dumps(list(synthetic_events(n_agents=1, days=5))))
    run = tmp_path / "run"
    args = ["--model", "lstm", "--preset", "tiny", "--epochs", "2", "--input-size", "24", "--horizon", "6"]
    interrupt_at_epoch(monkeypatch, 2)
    assert main(["forecast", str(events), *args, "--out", str(run)]) == 130
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.endswith(f"continue with: seqlab forecast --resume {run}")
    assert "members/member0/checkpoints/epoch_0001.safetensors" in err
    monkeypatch.undo()
    assert main(["forecast", "--resume", str(run)]) == 0
    for name in ("training_metrics.json", "training_metrics.png", "training_report.md", "evaluation.json",
                 "model_config.toml", "forecaster.safetensors", "run.json"):
        assert (run / name).is_file(), name
    history = json.loads((run / "training_metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    report = (run / "training_report.md").read_text()
    assert "seasonal_naive" in report and "Held out: " in report
    assert "`latency_within_threshold`: share of latency forecasts within 10%" in report

    loaded = seqlab.load(run)
    assert isinstance(loaded, Forecaster) and loaded.run_dir == run
    assert repr(loaded).startswith("Forecaster(lstm, input 24 -> horizon 6, target 'latency_ms'")
    assert loaded.predict(np.ones((24, len(loaded.columns)), np.float32)).shape == (6, 1)


def test_tuned_forecast_runs_refuse_to_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    record = {"kind": "forecaster", "data": {"default": True}, "arguments": {"model": "auto", "tune": 3}}
    (run / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="tuned run, which cannot be resumed"):
        seqlab.forecaster(resume=run)
    with pytest.raises(ValueError, match="is a forecaster run; resume it with seqlab.forecaster"):
        seqlab.poetry_autoencoder(resume=run)


def test_interruption_is_not_an_exception(tmp_path: Path) -> None:
    interrupted = TrainingInterrupted(tmp_path, "forecaster")
    assert isinstance(interrupted, KeyboardInterrupt) and not isinstance(interrupted, Exception)
    assert str(interrupted) == (f"interrupted; no checkpoint was written yet in {tmp_path}; "
                                f"continue with seqlab.forecaster(resume={str(tmp_path)!r})")


def test_code_lm_refuses_an_existing_run_before_training_its_tokenizer(
    taken: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = write_c_repo(tmp_path / "repo", n_files=4)
    monkeypatch.setattr(ByteBPETokenizer, "train", lambda *a, **k: pytest.fail("tokenizer trained"))
    with pytest.raises(FileExistsError, match="already holds a training run") as info:
        seqlab.code_lm(repo, preset="tiny", out=taken, verbose=False)
    assert f"seqlab.code_lm(resume={str(taken)!r})" in str(info.value)
    assert main(["code-lm", str(repo), "--preset", "tiny", "--out", str(taken)]) == 1
    err = capsys.readouterr().err
    assert f"seqlab code-lm --resume {taken}" in err and "resume=" not in err
    assert "nothing was overwritten" in err
    assert sorted(p.name for p in taken.iterdir()) == ["notes.txt"]
    # a missing folder is refused before any run directory is made
    assert main(["code-lm", str(tmp_path / "missing"), "--out", str(tmp_path / "new")]) == 1
    assert "missing: no such directory" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_code_lm_ctrl_c_then_resume_on_the_recorded_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = write_c_repo(tmp_path / "repo", n_files=10)
    run = tmp_path / "run"
    interrupt_at_epoch(monkeypatch, 2)
    args = ["--no-progress", "--threads", "1"]
    assert main(["code-lm", str(repo), "--preset", "tiny", "--epochs", "2", "--out", str(run), *args]) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert f"the last checkpoint is {run / 'checkpoints' / 'epoch_0001.safetensors'}" in err
    assert err.endswith(f"continue with: seqlab code-lm --resume {run}")
    monkeypatch.undo()
    tokenizer = (run / "tokenizer.json").read_bytes()

    # no folder given: the run's own (not /usr/include), with the run's tokenizer
    assert main(["code-lm", "--resume", str(run), *args]) == 0
    assert json.loads((run / "run.json").read_text())["data"] == {"path": str(repo.resolve())}
    assert (run / "tokenizer.json").read_bytes() == tokenizer
    history = json.loads((run / "training_metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]

    # --epochs on resume: trains on up to that epoch
    assert main(["code-lm", "--resume", str(run), "--epochs", "3", *args]) == 0
    history = json.loads((run / "training_metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    loaded = seqlab.load(run)
    assert type(loaded).__name__ == "CodeLM" and loaded.run_dir == run and loaded.config.epochs == 3
    assert loaded.source == str(repo.resolve())

    other = write_c_repo(tmp_path / "other", n_files=4, seed=1)
    assert main(["code-lm", str(other), "--resume", str(run), *args]) == 1
    err = capsys.readouterr().err
    assert f"was trained on {repo.resolve()}, not {other.resolve()}" in err and "--other-data" in err
    with pytest.raises(DataMismatchError, match="other_data=True"):
        seqlab.code_lm(other, resume=run, verbose=False)
    with pytest.raises(ValueError, match="only epochs can change on resume.*d_model"):
        seqlab.code_lm(resume=run, d_model=64, verbose=False)
    with pytest.raises(ValueError, match="started with preset 'tiny', not 'small'"):
        seqlab.code_lm(resume=run, preset="small", verbose=False)
