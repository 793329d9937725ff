"""The product-of-experts re-ranking of the code optimizer's candidates: the n-gram terms
against brute force, the ranking, and the weights chosen on a validation set."""

from __future__ import annotations

import math

import pytest

from seqlab.data.code import CodePair, enumerate_edits, tokenize_code
from seqlab.models.code import NGramCompleter, NGramReranker
from seqlab.models.code.baselines import BOS, EOS, NGramModel
from seqlab.models.code.rerank import Candidate, Reranking, choose_reranking, exact_match

LOOP = "def f{k}(items, n):\n    i = 0\n    while i < n:\n        items[i] = i * {k}\n        i += 1\n"


def _reranker() -> NGramReranker:
    pairs = [CodePair("bug_fix", "python", "", LOOP.format(k=k), f"t{k}.py") for k in range(20)]
    return NGramReranker(order=4).fit(pairs)


def test_reranker_gains_are_whole_sequence_score_differences():
    rr = _reranker()
    model = rr.models["python"]
    source = LOOP.format(k=99).replace("i < n", "i <= n")
    tokens = tokenize_code(source, "python")
    edits = ["".join(e.apply(tokens)) for e in enumerate_edits(tokens, "python", source)][:15]
    other = "def f99(items, n):\n    return n\n"  # not one edit away: scored whole
    outputs = [source, *edits, other, "def (:"]
    gains = rr.gains(source, "python", outputs)
    base = model.score(tokens)
    assert gains[0] == 0.0
    for text, gain in zip(outputs[1:-1], gains[1:-1]):
        assert gain == pytest.approx(model.score(tokenize_code(text, "python")) - base, abs=1e-9), text
    assert gains[-1] == -math.inf or math.isfinite(gains[-1])  # "def (:" lexes in Python; no crash
    assert rr.gains(source, "c", outputs) == [0.0] * len(outputs)  # no C model: no opinion


def test_completer_line_logprob_by_brute_force():
    pairs = [CodePair("completion", "python", "def f(x):\n", "    return x + 1", f"c{k}.py")
             for k in range(5)]
    comp = NGramCompleter(order=3).fit(pairs)
    prefix = "def f(x):\n    y = x\n"
    line = "    return y"
    head = tokenize_code(prefix[:-1], "python")
    toks = tokenize_code(prefix + line, "python")[len(head):]
    m, cache = comp.models["python"], NGramModel(3).fit([head])
    context = [BOS] * 2 + head
    expected = 0.0
    for t in toks:
        expected += math.log(0.5 * m.prob(context, t) + 0.5 * cache.prob(context, t))
        context.append(t)
    ends = {w for w in m.vocab | cache.vocab if "\n" in w and not w.strip()} | {EOS}
    p_end = sum(0.5 * m.prob(context, w) + 0.5 * cache.prob(context, w) for w in ends)
    assert comp.line_logprob(prefix, line, "python") == pytest.approx(expected + math.log(p_end))
    # the line the completer predicts is likelier than a worse one
    assert comp.line_logprob("def f(x):\n", "    return x + 1", "python") > comp.line_logprob(
        "def f(x):\n", "    return x + x + x", "python")
    assert comp.line_logprob(prefix, line, "c") == 0.0


def test_rank_and_choose_reranking():
    def pool(model_good: float, ngram_good: float) -> list[Candidate]:
        return [
            Candidate("src", -1.0, -1.0, 0.0, True, False, True),
            Candidate("good", model_good, model_good, ngram_good, False, False, True),
            Candidate("bad", -2.5, -2.5, -3.0, False, False, True),
            Candidate("broken", 10.0, 10.0, 10.0, False, False, False),  # does not parse: always last
        ]

    # the model alone prefers the source; the n-gram gain of "good" tips it with a weight >= 1
    pools = [pool(-2.0, 1.5), pool(-2.0, 1.5), pool(-0.5, 0.0)]
    targets = ["good", "good", "good"]
    assert [c.text for c in Reranking().rank(pools[0])] == ["src", "good", "bad", "broken"]
    assert exact_match(pools, targets, Reranking()) == pytest.approx(1 / 3)
    chosen, em = choose_reranking(pools, targets, weights=(0.0, 0.5, 1.0, 2.0))
    assert chosen == Reranking(1.0) and em == 1.0  # the smallest weight that reaches the best
    # a bias against the unchanged source does it without the n-gram
    chosen, em = choose_reranking(pools, targets, weights=(0.0,), source_biases=(0.0, -2.0, -math.inf))
    assert chosen == Reranking(0.0, -2.0) and em == 1.0
    assert Reranking(0.0, -math.inf).rank(pools[0])[0].text == "good"
    # a short output of the model's search that both experts like: the search bias sets it aside
    beam = Candidate("short", -0.5, -0.4, 5.0, False, True, True)
    searched = [[*p, beam] for p in pools]
    assert exact_match(searched, targets, Reranking(1.0)) == 0.0
    chosen, em = choose_reranking(searched, targets, weights=(0.0, 1.0), search_biases=(0.0, -10.0))
    assert chosen == Reranking(1.0, 0.0, -10.0) and em == 1.0
    assert exact_match(searched, targets, chosen) == em  # the grid's shortcut agrees with rank()
    # raw against length-normalised log-probabilities
    long_right = [[Candidate("a", -3.0, -1.0, 0.0, False, False, True),
                   Candidate("b", -2.0, -1.5, 0.0, False, False, True)]]
    assert choose_reranking(long_right, ["a"], weights=(0.0,))[0].length_normalised
    assert not choose_reranking(long_right, ["b"], weights=(0.0,))[0].length_normalised
    assert Reranking.from_dict(Reranking(0.5, -math.inf, -2.0, False).to_dict()) == Reranking(
        0.5, -math.inf, -2.0, False)
    with pytest.raises(ValueError, match="lengths differ"):
        exact_match(pools, targets[:2], Reranking())


def test_similarity_breaks_ties_of_exact_match():
    # no candidate is exact; the n-gram weight brings the closer line to the top
    pools = [[Candidate("    x", -1.0, -1.0, -9.0, False, True, True),
              Candidate("    return x + 1", -3.0, -3.0, -1.0, False, False, True)]]
    targets = ["    return x + 2"]
    assert choose_reranking(pools, targets, weights=(0.0, 1.0))[0] == Reranking()  # a tie: the model alone
    chosen, em = choose_reranking(pools, targets, weights=(0.0, 1.0), similarity=True)
    assert chosen.ngram_weight == 1.0 and em == 0.0


def test_completion_candidates_are_reindented_prefix_lines_and_frequent_lines():
    from seqlab.models.code.search import completion_candidates, expected_indent, indent_unit

    prefix = "def f(self, x):\n    if x:\n        self.handle_read()\n    elif self.y:\n"
    # Python: after a line ending with ':' one level deeper than it
    assert expected_indent(prefix, "python") == "        "
    assert expected_indent("def f(x):\n    y = x\n", "python") == "    "
    assert expected_indent("", "python") == ""
    cands = completion_candidates(prefix, "python", ["return None", "pass", "  pass  "])
    assert "        self.handle_read()" in cands  # repeated from the parallel branch, re-indented
    assert "        def f(self, x):" in cands and "        elif self.y:" in cands
    assert cands[-2:] == ["        return None", "        pass"]  # the given lines last, distinct
    assert len(cands) == len(set(cands)) and all(c.strip() for c in cands)
    # the prefix's own indentation step (two spaces here, tabs there)
    assert indent_unit("def g():\n  if a:\n    b()\n  if c:\n") == "  "
    assert completion_candidates("def g():\n  if a:\n    b()\n  if c:\n", "python")[2] == "    b()"
    assert indent_unit("def g():\n\tif a:\n") == "\t"
    # C: the previous line's indentation, one deeper after '{'
    c_prefix = "int f (int a)\n{\n  int b = a;\n  if (b)\n    {\n"
    assert expected_indent(c_prefix, "c", "  ") == "      "  # GNU style: braces indented too
    assert completion_candidates("int f (void)\n{\n  g ();\n", "c") == ["  int f (void)", "  {", "  g ();"]


def test_completer_frequent_lines_are_the_training_next_lines():
    pairs = [CodePair("completion", "python", "def f(x):\n", "    return x", f"c{k}.py") for k in range(3)]
    pairs += [CodePair("completion", "python", "def g():\n", "        pass", "d.py"),
              CodePair("completion", "c", "int f (void)\n{\n", "  return 0;", "e.c")]
    comp = NGramCompleter(order=3).fit(pairs)
    assert comp.frequent_lines("python", 5) == ["return x", "pass"]
    assert comp.frequent_lines("python", 1) == ["return x"]
    assert comp.frequent_lines("c", 5) == ["return 0;"] and comp.frequent_lines("go", 5) == []
    # the baseline's own completion is unchanged by what it counts
    assert comp.complete("def f(x):\n", "python") == "    return x"
