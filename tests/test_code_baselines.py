"""Code optimizer baselines and evaluation: the n-gram model's probabilities, the reranker
fixing obvious injected bugs, completion, retrieval, per-task scores, and the real-edit
benchmark on Debian's patch hunks (skipped without ../shared/data)."""

from __future__ import annotations

import math
import sysconfig
from pathlib import Path

import pytest

from seqlab.data.code import CodePair, load_code_data, mine_file, read_pairs_jsonl, split_by_file
from seqlab.models.code import (
    NearestBody,
    NGramCompleter,
    NGramModel,
    NGramReranker,
    baseline_scores,
    evaluate_outputs,
    real_edit_scores,
)

STDLIB = Path(sysconfig.get_paths()["stdlib"])
LOOPS = [
    "def f{k}(items, n):\n    i = 0\n    while i < n:\n        items[i] = i * {k}\n"
    "        i += 1\n    return items\n",
    "def g{k}(a, lo, hi):\n    if lo <= hi:\n        return a[lo:hi]\n    return a\n",
]


def _train_pairs() -> list[CodePair]:
    return [
        CodePair("bug_fix", "python", "", text.format(k=k), f"t{k}.py") for k in range(30) for text in LOOPS
    ]


def test_ngram_probabilities_sum_to_one():
    m = NGramModel(order=3).fit([list("abcab"), list("abd")])
    for context in ([], ["a"], ["a", "b"], ["z", "q"]):
        total = sum(m.prob(context, w) for w in m.vocab) + m.prob(context, "<never-seen>") * 1
        assert total == pytest.approx(1.0, abs=1e-9)
    assert m.score(list("ab")) == pytest.approx(
        sum(m.logprob(c, w) for c, w in [(["<s>", "<s>"], "a"), (["<s>", "a"], "b"), (["a", "b"], "</s>")])
    )
    assert m.prob(["a"], "b") > m.prob(["a"], "d") > 0 and math.isfinite(m.score(list("zzz")))


def test_reranker_fixes_an_obvious_comparison_swap():
    reranker = NGramReranker(order=4).fit(_train_pairs())
    correct = LOOPS[0].format(k=99)
    buggy = correct.replace("while i < n", "while i <= n")
    assert reranker.fix(buggy, "python") == correct
    buggy = LOOPS[1].format(k=99).replace("lo <= hi", "lo > hi")
    assert reranker.fix(buggy, "python") == LOOPS[1].format(k=99)
    assert reranker.fix(correct, "python") == correct  # correct code is left alone


def test_completer_and_nearest_body():
    pairs = [
        CodePair("completion", "python", "def f(x):\n", "    return x + 1", f"c{k}.py") for k in range(5)
    ] + [CodePair("completion", "python", "def g(y):\n    z = y\n", "    print(z)", "d.py")]
    completer = NGramCompleter(order=3).fit(pairs)
    assert completer.complete("def f(x):\n", "python") == "    return x + 1"
    gen = [
        CodePair(
            "generation",
            "python",
            'def area(w, h):\n    """Area of a rectangle."""\n',
            "    return w * h\n",
            "a",
        ),
        CodePair("generation", "python", 'def hello():\n    """Greet."""\n', "    print('hi')\n", "b"),
    ]
    nearest = NearestBody().fit(gen)
    assert (
        nearest.generate('def area(width, h):\n    """Area of a square."""\n', "python")
        == "    return w * h\n"
    )


def test_evaluate_outputs_scores():
    pairs = [CodePair("bug_fix", "python", "x = a < b\n", "x = a <= b\n", "f.py")] * 2
    scores = evaluate_outputs(pairs, ["x = a <= b\n", "x = a < b\n"])
    assert scores["n"] == 2 and scores["exact_match"] == 0.5 and scores["unchanged_rate"] == 0.5
    assert scores["parse_rate"] == 1.0 and scores["few_samples"] is True
    assert scores["token_accuracy"] == pytest.approx((1 + 5 / 6) / 2)
    bad = evaluate_outputs(pairs[:1], ["x = (a <= b\n"])
    assert bad["parse_rate"] == 0.0 and bad["reference_parse_rate"] == 1.0
    with pytest.raises(ValueError, match="pairs and outputs: lengths differ, 2 and 1"):
        evaluate_outputs(pairs, ["x"])


@pytest.mark.slow
def test_baselines_on_mined_stdlib_pairs(tmp_path):
    for name in ("textwrap.py", "bisect.py", "heapq.py", "shlex.py", "fnmatch.py", "colorsys.py"):
        (tmp_path / name).write_text((STDLIB / name).read_text(encoding="utf-8"))
    corpus = load_code_data(tmp_path)
    splits = split_by_file(corpus.pairs, fractions=(0.5, 0.0, 0.5), seed=0)
    scores = baseline_scores(splits.train, splits.test)
    assert {"bug_fix", "completion"} <= set(scores) <= {"bug_fix", "completion", "generation"}
    fix = scores["bug_fix"]
    assert fix["unchanged"]["exact_match"] == 0.0 and fix["unchanged"]["unchanged_rate"] == 1.0
    assert fix["ngram_reranker"]["exact_match"] > 0.1  # it knows the bug classes
    for task in scores.values():
        for s in task.values():
            assert 0.0 <= s["exact_match"] <= 1.0 and s["n"] > 0 and s["few_samples"] == (s["n"] < 200)


@pytest.mark.slow
def test_debian_patch_hunks_benchmark(shared_data):
    """Real edits: the baselines' .fix exact match and unchanged rate (figures in RESULTS.md)."""
    path = shared_data / "debian_patch_hunks.jsonl"
    hunks = read_pairs_jsonl(path)
    assert len(hunks) == 335 and {p.lang for p in hunks} == {"c"}
    headers = sorted(Path("/usr/include").glob("*.h"))[:60]
    train = [p for h in headers for p in mine_file(h, "c")] if headers else []
    if not train:
        pytest.skip("no C functions to fit the reranker on")
    scores = real_edit_scores(path, train)
    assert scores["unchanged"]["n"] == 335 and scores["unchanged"]["unchanged_rate"] == 1.0
    assert scores["unchanged"]["exact_match"] == sum(p.source == p.target for p in hunks) / 335
    assert 0.0 <= scores["ngram_reranker"]["exact_match"] <= 1.0
    assert scores["ngram_reranker"]["unchanged_rate"] > 0.5  # real edits are mostly not its bug classes
