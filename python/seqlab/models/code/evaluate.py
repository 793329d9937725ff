"""Evaluation of the code optimizer's tasks: per-task scores of any predictor, the baselines
on a held-out split, and the real-edit benchmark (Debian's patch hunks).

Scores of a task (:func:`evaluate_outputs`): ``n`` (examples), ``exact_match``,
``token_accuracy`` (over code tokens), ``edit_similarity`` (over characters),
``parse_rate`` (share of outputs that parse: ``bug_fix`` the output,
``generation`` the source followed by the generated body, ``completion`` the line at lexer
level; see :mod:`seqlab.data.code.syntax`), ``reference_parse_rate`` (the same check on the
references, for context), ``unchanged_rate`` (``bug_fix``: share of outputs equal to the
source) and ``few_samples`` (true below 200 examples: such a figure must say so).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ... import metrics
from ...data.code.lexers import CodeSyntaxError
from ...data.code.pairs import TASKS, CodePair, read_pairs_jsonl
from ...data.code.syntax import lexes, parses
from ...data.code.tokens import tokenize_code
from .baselines import NearestBody, NGramCompleter, NGramReranker, unchanged

Predictor = Callable[[str, str], str]


def _tokens(code: str, lang: str) -> list[str]:
    try:
        return tokenize_code(code, lang)
    except CodeSyntaxError:
        return list(code)


def _parses(pair: CodePair, output: str) -> bool:
    if pair.task == "completion":
        return lexes(output, pair.lang)
    if pair.task == "generation":
        return parses(pair.source + output, pair.lang)
    return parses(output, pair.lang)


def evaluate_outputs(pairs: Sequence[CodePair], outputs: Sequence[str]) -> dict[str, Any]:
    """Scores of ``outputs`` (one per pair, all of one task) against the pairs' targets
    (see the module docstring)."""
    if len(pairs) != len(outputs):
        raise ValueError(f"pairs and outputs: lengths differ, {len(pairs)} and {len(outputs)}")
    if not pairs:
        raise ValueError("pairs: no examples to evaluate")
    tasks = {p.task for p in pairs}
    if len(tasks) != 1:
        raise ValueError(f"pairs: expected one task, got {sorted(tasks)}")
    refs = [p.target for p in pairs]
    scores: dict[str, Any] = {
        "n": len(pairs),
        "exact_match": metrics.exact_match(outputs, refs),
        "token_accuracy": metrics.token_accuracy(
            [_tokens(o, p.lang) for o, p in zip(outputs, pairs)], [p.target_tokens for p in pairs]
        ),
        "edit_similarity": metrics.edit_similarity(outputs, refs),
        "parse_rate": metrics.share([_parses(p, o) for p, o in zip(pairs, outputs)]),
        "reference_parse_rate": metrics.share([_parses(p, p.target) for p in pairs]),
    }
    if tasks == {"bug_fix"}:
        scores["unchanged_rate"] = metrics.share([o == p.source for o, p in zip(outputs, pairs)])
    scores["few_samples"] = len(pairs) < metrics.code.FEW_SAMPLES
    return scores


def task_scores(
    pairs: Sequence[CodePair], predict: Predictor, outputs: list[str] | None = None
) -> dict[str, Any]:
    """Scores of ``predict(source, lang) -> output`` on ``pairs`` (one task); the outputs
    are appended to ``outputs`` when given."""
    found = [predict(p.source, p.lang) for p in pairs]
    if outputs is not None:
        outputs.extend(found)
    return evaluate_outputs(pairs, found)


def baseline_scores(
    train: Sequence[CodePair],
    test: Sequence[CodePair],
    order: int = 4,
    outputs: dict[str, dict[str, list[str]]] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{task: {baseline: scores}}`` of the baselines fitted on ``train`` and scored on
    ``test``, for every task present in ``test``: ``bug_fix`` ``unchanged`` and
    ``ngram_reranker``; ``completion`` ``ngram``; ``generation`` ``nearest_body``. Each
    baseline's outputs (in the order of the task's pairs in ``test``) go to
    ``outputs[task][baseline]`` when ``outputs`` is given."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for task in TASKS:
        held = [p for p in test if p.task == task]
        if not held:
            continue
        if task == "bug_fix":
            reranker = NGramReranker(order).fit(train)
            predictors: dict[str, Predictor] = {"unchanged": lambda s, _lang: unchanged(s),
                                                "ngram_reranker": reranker.fix}
        elif task == "completion":
            predictors = {"ngram": NGramCompleter(order).fit(train).complete}
        else:
            predictors = {"nearest_body": NearestBody().fit(train).generate}
        out[task] = {}
        for name, predict in predictors.items():
            found: list[str] = []
            out[task][name] = task_scores(held, predict, found)
            if outputs is not None:
                outputs.setdefault(task, {})[name] = found
    return out


def real_edit_scores(
    path: str | Path, train: Sequence[CodePair], fix: Predictor | None = None, order: int = 4
) -> dict[str, dict[str, Any]]:
    """Scores on real edits (a JSONL of ``bug_fix`` pairs such as Debian's patch hunks,
    never trained on): ``unchanged``, ``ngram_reranker`` (fitted on ``train``) and, when
    given, ``model`` (``fix(source, lang)``)."""
    pairs = [p for p in read_pairs_jsonl(path) if p.task == "bug_fix"]
    if not pairs:
        raise ValueError(f"{path}: no bug_fix pairs")
    found: dict[str, dict[str, list[str]]] = {}
    out = baseline_scores(train, pairs, order, outputs=found)["bug_fix"]
    if fix is not None:
        model: list[str] = []
        out["model"] = task_scores(pairs, fix, model)
        add_paired_tests(out, model, found["bug_fix"], [p.target for p in pairs])
    return out


def add_paired_tests(rows: dict[str, Any], model: Sequence[str], baselines: Mapping[str, Sequence[str]],
                     references: Sequence[str]) -> None:
    """Adds to each baseline's scores in ``rows`` its paired comparison with the model's
    outputs on the same examples (``"vs_model"``: :func:`seqlab.metrics.paired_exact_match`
    with the model as ``a``)."""
    for name, outputs in baselines.items():
        if name in rows:
            rows[name]["vs_model"] = metrics.paired_exact_match(model, outputs, references)
