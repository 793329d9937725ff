"""The code optimizer recipe end to end on a tiny budget: files written and read back, the same
outputs after seqlab.load, refusals and errors, the shapes of fix/complete/generate."""

from __future__ import annotations

import json
import shutil
import sysconfig
from pathlib import Path

import pytest

import seqlab
from seqlab.cli import main
from seqlab.recipes.code_optimizer import CodeOptimizer, code_optimizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = ["bisect.py", "colorsys.py", "fnmatch.py", "heapq.py", "textwrap.py", "shlex.py", "glob.py",
           "stat.py", "genericpath.py", "keyword.py"]
TINY = {"epochs": 1, "max_len": 40}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("code_sources")
    for name in MODULES:
        shutil.copy(STDLIB / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def fitted(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> CodeOptimizer:
    out = tmp_path_factory.mktemp("runs") / "code"
    return code_optimizer(sources, lang="python", preset="tiny", out=out, progress=False, verbose=False,
                          real_edits=None, **TINY)


def test_run_directory_is_written_and_read_back(fitted: CodeOptimizer) -> None:
    run = fitted.run_dir
    assert run is not None
    for name in ("model.safetensors", "model_config.toml", "vocabulary.json", "training_metrics.json",
                 "training_report.md", "evaluation.json", "benchmark_results.json", "run.json"):
        assert (run / name).is_file(), name
    evaluation = json.loads((run / "evaluation.json").read_text())
    results = evaluation["results"]
    assert set(results) <= {"bug_fix", "completion", "generation", "real_edits", "correct_code"}
    assert "bug_fix" in results
    for task, rows in results.items():
        model = rows["model"]
        assert model["n"] >= 1 and 0.0 <= model["exact_match"] <= 1.0
        assert model["few_samples"] == (model["n"] < 200)
        baselines = [k for k, v in rows.items() if isinstance(v, dict) and not k.startswith("model")]
        assert baselines, task
        assert all(rows[b]["n"] == model["n"] for b in baselines)
        assert set(rows["loses_to"]) == {b for b in baselines
                                        if rows[b]["exact_match"] > model["exact_match"]}
        for b in baselines:  # the paired test counts the same exact matches as the scores
            paired = rows[b]["vs_model"]
            hits = model["exact_match"] * model["n"], rows[b]["exact_match"] * model["n"]
            assert paired["a_only"] + paired["both"] == pytest.approx(hits[0])
            assert paired["b_only"] + paired["both"] == pytest.approx(hits[1])
            assert 0.0 < paired["p_value"] <= 1.0
    assert "unchanged_rate" in results["bug_fix"]["model"]
    # bug_fix's default mode adds the one-edit candidates; beam search alone is reported beside it
    assert results["bug_fix"]["mode"] == "hybrid"
    assert results["bug_fix"]["model_beam_search"]["n"] == results["bug_fix"]["model"]["n"]
    bench = json.loads((run / "benchmark_results.json").read_text())
    modes = {"greedy", "convergent", "divergent", "hybrid"}
    assert set(bench["latency_seconds_per_call"]["bug_fix"]) == modes
    assert bench["training"]["tokens_per_second"] > 0
    report = (run / "training_report.md").read_text()
    assert "bug_fix, held-out files" in report and "held-out pairs" in report
    assert "\n" not in repr(fitted) and repr(fitted).startswith("CodeOptimizer(")
    assert "<table>" in fitted._repr_html_()


def test_load_gives_the_same_outputs(fitted: CodeOptimizer) -> None:
    code = "def f(a, b):\n    if a < b:\n        return a\n    return b"
    loaded = seqlab.load(fitted.run_dir)
    assert isinstance(loaded, CodeOptimizer)
    assert loaded.fix(code) == fitted.fix(code)
    assert loaded.complete(code) == fitted.complete(code)
    spec = 'def f(a):\n    """Twice a."""'
    assert loaded.generate(spec, n=2) == fitted.generate(spec, n=2)
    assert loaded.evaluation.keys() == fitted.evaluation.keys()


def test_output_shapes_and_layout(fitted: CodeOptimizer) -> None:
    snippet = "    if x > 0:\n        y = x + 1\n"
    fixed = fitted.fix(snippet)
    assert isinstance(fixed, str)
    assert fixed.startswith("    ") and fixed.endswith("\n")  # indentation and trailing newline kept
    several = fitted.fix(snippet, n=3)
    assert isinstance(several, list) and len(several) == 3 and all(isinstance(s, str) for s in several)
    assert isinstance(fitted.complete("def f(x):\n    y = x"), str)
    samples = fitted.generate("def g(x):\n    # add one", n=2)
    assert isinstance(samples, list) and 1 <= len(samples) <= 2
    assert isinstance(fitted.fix("x = 1", mode="greedy"), str)
    assert fitted.fix("   \n") == "   \n"


def test_bad_input_errors(fitted: CodeOptimizer, sources: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        fitted.fix("x = 1", mode="creative")
    with pytest.raises(ValueError, match="max_len=40"):
        fitted.fix("\n".join(f"x{i} = {i}" for i in range(40)))
    with pytest.raises(TypeError, match="str"):
        fitted.fix(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task"):
        code_optimizer(sources, task="refactor", out=tmp_path / "a", verbose=False)
    with pytest.raises(ValueError, match="lang"):
        code_optimizer(sources, lang="rust", out=tmp_path / "b", verbose=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_existing_run_is_refused(fitted: CodeOptimizer, sources: Path) -> None:
    before = (fitted.run_dir / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a training run"):
        code_optimizer(sources, preset="tiny", out=fitted.run_dir, verbose=False)
    assert (fitted.run_dir / "model.safetensors").read_bytes() == before


def test_cli_refuses_an_existing_run(fitted: CodeOptimizer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["code", "--preset", "tiny", "--out", str(fitted.run_dir)]) == 1
    assert "seqlab code --resume" in capsys.readouterr().err


@pytest.mark.slow
def test_real_edits_are_scored(fitted: CodeOptimizer, shared_data: Path) -> None:
    from seqlab.models.code import real_edit_scores

    path = shared_data / "debian_patch_hunks.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    scores = real_edit_scores(path, fitted.splits.train, fitted._fix_for_eval)
    assert set(scores) == {"unchanged", "ngram_reranker", "model"}
    assert scores["model"]["n"] == scores["unchanged"]["n"] > 0
    assert scores["unchanged"]["unchanged_rate"] == 1.0


def test_fix_ranks_the_one_edit_repairs_by_model_score(fitted: CodeOptimizer) -> None:
    from seqlab.data.code import enumerate_edits, parses, tokenize_code
    from seqlab.models.code.rerank import Reranking

    code = "if a < b:\n    x = a + 1"
    tokens = tokenize_code(code, "python")
    (pool,) = fitted.candidate_pools("bug_fix", [code], ["python"])
    texts = [c.text for c in pool]
    assert len(set(texts)) == len(texts)
    # the source and every one-edit candidate, those with a token the model cannot name too
    # (``a + 2``: a new literal, scored as the unknown token)
    expected = {"".join(e.apply(tokens)) for e in enumerate_edits(tokens, "python")} | {code}
    assert expected <= set(texts) and "if a < b:\n    x = a + 2" in texts and len(expected) > 5
    assert [c.source for c in pool].count(True) == 1 and next(c for c in pool if c.source).text == code
    assert all(c.valid == parses(c.text, "python") for c in pool)
    # the n-gram term is the reranker's gain over the source
    gains = dict(zip(texts, fitted.experts["bug_fix"].gains(code, "python", texts)))
    assert all(c.ngram == gains[c.text] for c in pool) and gains[code] == 0.0
    # the default mode returns the pool ranked by the chosen weights, those that parse first
    best = fitted.rerankings.get("bug_fix", Reranking()).rank(pool)
    assert fitted.fix(code) == best[0].text
    ranked = fitted.fix(code, n=len(pool))  # n samples where the model is unsure: other samples
    proposed = [c.text for c in best if not c.searched]
    assert [t for t in ranked if t in set(proposed)] == proposed
    valid = [parses(t, "python") for t in ranked]
    assert valid == sorted(valid, reverse=True)
    beams = fitted.fix(code, mode="convergent", n=3)
    assert isinstance(beams, list) and len(beams) == 3


def test_reranking_weights_are_chosen_on_validation_saved_and_loaded(fitted: CodeOptimizer) -> None:
    from seqlab.models.code.rerank import Reranking, exact_match
    from seqlab.recipes.code_optimizer import EXPERT_PAIRS

    document = json.loads((fitted.run_dir / "evaluation.json").read_text())
    results = document["results"]
    for task in ("bug_fix", "completion"):
        chosen = fitted.rerankings[task]
        notes = document["reranking"][task]
        assert notes["ngram_weight"] == chosen.ngram_weight and notes["validation_n"] >= 1
        # the chosen weights are the best of the grid on the validation pairs, at least the model alone
        held = [p for p in fitted.splits.val if p.task == task and len(p.source_tokens) <= 40]
        pools = fitted.candidate_pools(task, [p.source for p in held], [p.lang for p in held])
        targets = [p.target for p in held]
        assert exact_match(pools, targets, chosen) == pytest.approx(notes["validation_exact_match"])
        assert notes["validation_exact_match"] >= notes["validation_exact_match_model_alone"]
        assert notes["validation_exact_match_model_alone"] == pytest.approx(
            exact_match(pools, targets, Reranking()))
        # the pure model's beam search is reported beside the default mode
        assert results[task]["model_beam_search"]["n"] == results[task]["model"]["n"]
    assert results["completion"]["mode"] == "hybrid"
    # the experts' training pairs are kept, and the weights come back with the model
    assert (fitted.run_dir / EXPERT_PAIRS).is_file()
    loaded = seqlab.load(fitted.run_dir)
    assert loaded.rerankings == fitted.rerankings
    assert set(loaded.experts) == set(fitted.experts)


def test_completion_pool_holds_the_reindented_prefix_lines_and_never_unk(fitted: CodeOptimizer) -> None:
    from seqlab.recipes.code_optimizer import FREQUENT_LINES

    prefix = "def f(self, x):\n    if x:\n        self.handle_read()\n    elif self.y:\n"
    (pool,) = fitted.candidate_pools("completion", [prefix], ["python"])
    texts = [c.text for c in pool]
    assert len(set(texts)) == len(texts)
    # the prefix's lines re-indented to the next line's indentation, proposed (not searched)
    assert "        self.handle_read()" in texts and "        x = 1" not in texts
    frequent = fitted.experts["completion"].frequent_lines("python", FREQUENT_LINES)
    assert frequent and {"        " + line for line in frequent} <= set(texts)
    assert not next(c for c in pool if c.text == "        self.handle_read()").searched
    # no decoding mode emits the unknown token (a tiny model's likeliest token for rare ones)
    sources = [p.source for p in fitted.splits.test if p.task == "completion"][:8] + [prefix]
    for mode in ("greedy", "convergent", "divergent", "hybrid"):
        for outs in fitted.predict("completion", sources, ["python"] * len(sources), mode, n=3):
            assert not any("<unk>" in o for o in outs), mode
    for task, code in (("bug_fix", "if a < b:\n    x = a + 1"), ("generation", "def g(x):\n    # add one")):
        for mode in ("greedy", "divergent"):
            assert not any("<unk>" in o for o in fitted.predict(task, [code], ["python"], mode, n=3)[0])


def test_report_calls_a_lead_within_chance_not_significant() -> None:
    from seqlab.recipes.code_optimizer import summaries

    def scores(em: float, n: int = 300) -> dict:
        return {"n": n, "exact_match": em, "token_accuracy": 0.5, "edit_similarity": 0.5, "parse_rate": 1.0,
                "few_samples": False}

    close = {"model": scores(0.011), "ngram": {**scores(0.005), "vs_model": {"a_only": 4, "b_only": 1,
                                                                            "both": 1, "p_value": 0.375}},
             "mode": "hybrid"}
    clear = {"model": scores(0.2), "ngram": {**scores(0.1), "vs_model": {"a_only": 40, "b_only": 10,
                                                                        "both": 20, "p_value": 2e-5}},
             "mode": "hybrid"}
    (note,) = summaries({"completion": close})["completion"].notes
    assert "not significantly" in note and "p = 0.38" in note and "alone exact on 4 pairs" in note
    (note,) = summaries({"completion": clear})["completion"].notes
    assert note.startswith("The model beats every baseline") and "p = 2e-05" in note


def test_fix_of_code_that_may_be_correct(fitted: CodeOptimizer) -> None:
    """``assume_bug=False`` ranks the same pool by weights chosen on the validation units with
    and without their bug (the best of the grid on that mixed set), and the evaluation scores
    ``.fix`` on the held-out units themselves (correct code), where the input is the answer."""
    from seqlab.models.code.rerank import MAYBE_CORRECT_SOURCE_BIASES, exact_match
    from seqlab.recipes.code_optimizer import CORRECT_CODE, MAYBE_CORRECT, MAYBE_CORRECT_ROW

    chosen = fitted.rerankings[MAYBE_CORRECT]
    assert chosen.source_bias in MAYBE_CORRECT_SOURCE_BIASES
    notes = fitted.reranking(MAYBE_CORRECT)
    held = [p for p in fitted.splits.val if p.task == "bug_fix" and len(p.source_tokens) <= 40]
    targets = [p.target for p in held]
    buggy = fitted.candidate_pools("bug_fix", [p.source for p in held], [p.lang for p in held])
    clean = fitted.candidate_pools("bug_fix", targets, [p.lang for p in held])
    assert notes["validation_exact_match"] == pytest.approx(exact_match(buggy, targets, chosen))
    assert notes["validation_correct_kept"] == pytest.approx(exact_match(clean, targets, chosen))
    mixed = (notes["validation_exact_match"] + notes["validation_correct_kept"]) / 2
    assert notes["validation_accuracy"] == pytest.approx(mixed)
    # at least as good on the mixed set as the weights chosen for buggy code only
    assert mixed >= (exact_match(buggy, targets, fitted.rerankings["bug_fix"])
                     + exact_match(clean, targets, fitted.rerankings["bug_fix"])) / 2 - 1e-12
    # .fix follows the chosen ranking, layout kept
    code = targets[0]
    (pool,) = fitted.candidate_pools("bug_fix", [code], [held[0].lang])
    assert fitted.fix(code, assume_bug=False, lang=held[0].lang) == chosen.rank(pool)[0].text
    # the evaluation: the maybe-correct row on buggy code, and the correct-code section
    results = json.loads((fitted.run_dir / "evaluation.json").read_text())["results"]
    assert results["bug_fix"][MAYBE_CORRECT_ROW]["n"] == results["bug_fix"]["model"]["n"]
    correct = results[CORRECT_CODE]
    assert correct["unchanged"]["exact_match"] == 1.0
    assert correct["model"]["n"] == results["bug_fix"]["model"]["n"]
    for row in ("model", MAYBE_CORRECT_ROW, "ngram_reranker"):  # on correct code, kept = exact match
        assert correct[row]["unchanged_rate"] == correct[row]["exact_match"]
    assert "bug_fix on correct code" in (fitted.run_dir / "training_report.md").read_text()
    assert seqlab.load(fitted.run_dir).rerankings[MAYBE_CORRECT] == chosen
