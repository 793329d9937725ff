"""The code optimizer recipe: ``seqlab.code_optimizer(...)``.

One pointer-generator seq2seq model (:class:`~seqlab.models.code.CodeSeq2Seq`) learns the
three tasks at once; each source is read with a task tag token in front (``<bug_fix>``,
``<completion>``, ``<generation>``), so one model fixes, completes and generates. The recipe
mines or reads the pairs, splits them by file, trains with early stopping and a learning rate
reduced on plateau, decodes the held-out split with each task's default mode, scores it beside
the baselines and writes the run directory.

``bug_fix`` decodes in hybrid mode by default: beam search (and sampling where the model is
unsure), plus every candidate one edit of the injected bug classes away from the source
(:func:`seqlab.data.code.bugs.enumerate_edits`, the set the n-gram reranker searches) and
the source itself, each scored by the model (:func:`seqlab.models.code.search.score_targets`);
``completion`` adds the n-gram completer's line, every line of the prefix and the most
frequent next lines of the training code, re-indented to the line's expected indentation
(:func:`seqlab.models.code.search.completion_candidates`). No mode ever emits the unknown
token (:class:`seqlab.models.code.search.MaskedSession`). Both re-rank their candidates
by a product of experts, the model's log-probability plus a weight times an n-gram model's
of the training code, outputs that do not parse last, the weights chosen on the validation
split (:mod:`seqlab.models.code.rerank`, :meth:`CodeOptimizer.choose_rerankings`). The
evaluation reports the model's beam search alone (mode convergent) beside it as
``model_beam_search``.

``fix`` assumes the snippet holds a bug; ``fix(code, assume_bug=False)`` ranks the same
candidates by a second set of weights, chosen on the validation units with and without their
bug, so that correct code is mostly kept. The evaluation scores both on the held-out buggy
units and on the units themselves (``correct_code``), and every baseline row carries a paired
sign test against the model (``vs_model``); the report calls a lead with p >= 0.05 not
significant.
"""

from __future__ import annotations

import json
import math
import textwrap
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..autograd import Tensor
from ..data.code.bugs import enumerate_edits
from ..data.code.encoding import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    CodeBatches,
    EncodedPairs,
    decode_ids,
    encode_pairs,
    source_ids,
)
from ..data.code.lexers import LANGS, CodeSyntaxError
from ..data.code.pairs import (
    TASKS,
    CodeDataError,
    CodePair,
    check_lang,
    check_task,
    guess_lang,
    read_pairs_jsonl,
    write_pairs_jsonl,
)
from ..data.code.tokens import tokenize_code
from ..data.vocabulary import Vocabulary
from ..models.code.baselines import NGramCompleter, NGramReranker
from ..models.code.config import Seq2SeqConfig
from ..models.code.config import preset as make_preset
from ..models.code.evaluate import (
    _parses,
    add_paired_tests,
    baseline_scores,
    evaluate_outputs,
    real_edit_scores,
)
from ..models.code.rerank import (
    MAYBE_CORRECT_SOURCE_BIASES,
    SEARCH_BIASES,
    SOURCE_BIASES,
    WEIGHTS,
    Candidate,
    Reranking,
    choose_reranking,
    exact_match,
)
from ..models.code.search import (
    MODES,
    Hypothesis,
    MaskedSession,
    completion_candidates,
    decode,
    hybrid_pool,
    score_targets,
)
from ..models.code.seq2seq import CodeSeq2Seq, DecoderSession
from ..optim import AdamW
from ..report.evaluation import EvaluationSummary, append_to_report, recipe_html
from ..serialization import atomic_write_text, write_json
from ..train import Checkpoint, EarlyStopping, Trainer
from ..train.schedules import ReduceLROnPlateau
from .loading import read_model_files, save_model_files, saved_evaluation
from .run_dir import claim_run_dir, interruptible, read_run, resume_data, resumed_config

KIND = "code_optimizer"
DEFAULT_MODES = {"bug_fix": "hybrid", "completion": "hybrid", "generation": "divergent"}
#: the evaluation row of bug_fix decoded by beam search alone, beside the default mode's
BEAM_ROW = "model_beam_search"
TASK_TAGS = {t: f"<{t}>" for t in TASKS}
REAL_EDITS = "debian_patch_hunks.jsonl"
#: the training pairs the n-gram experts of the re-ranking are fitted on, kept in the run directory
EXPERT_PAIRS = "ngram_train_pairs.jsonl"
#: the tasks whose hybrid candidates are re-ranked with an n-gram expert
RERANKED = ("bug_fix", "completion")
#: the re-ranking of ``fix(..., assume_bug=False)``: the snippet may hold no bug, so the
#: unchanged snippet competes with the repairs (weights chosen on buggy and correct code)
MAYBE_CORRECT = "bug_fix_maybe_correct"
#: the evaluation row of ``bug_fix`` decoded with ``assume_bug=False``, and the evaluation of
#: ``.fix`` on correct code (the held-out units themselves, where the right output is the input)
MAYBE_CORRECT_ROW = "model_assume_bug_false"
CORRECT_CODE = "correct_code"
SCORE_KEYS = ["exact_match", "token_accuracy", "edit_similarity", "parse_rate"]
_DECODE_BATCH = 64
#: the most frequent next lines of the training code that join every completion pool
FREQUENT_LINES = 10
#: the sign-test p-value below which the report calls the model's lead over a baseline real
SIGNIFICANT = 0.05


def tagged(pair: CodePair) -> CodePair:
    """The pair as the model reads it: its source tokens behind the task's tag token."""
    out = replace(pair)
    out.__dict__["source_tokens"] = [TASK_TAGS[pair.task], *pair.source_tokens]
    out.__dict__["target_tokens"] = pair.target_tokens
    return out


def _real_edits_file() -> Path | None:
    """``shared/data/debian_patch_hunks.jsonl`` beside the working directory or the project."""
    for root in (Path.cwd().parent, Path(__file__).resolve().parents[3].parent):
        path = root / "shared" / "data" / REAL_EDITS
        if path.is_file():
            return path
    return None


class CodeOptimizer:
    """A trained code optimizer: bug fixing, line completion and generation from a signature.

    Attributes:
        model: the :class:`~seqlab.models.code.CodeSeq2Seq`.
        config: its :class:`~seqlab.models.code.Seq2SeqConfig` (``vocab_size`` the built
            vocabulary's size).
        vocab: the token vocabulary (with the task tags).
        tasks, langs: what it was trained on.
        splits: the training corpus split by file (None after :func:`seqlab.load`).
        evaluation: the last :meth:`evaluate` result; summaries: one
            :class:`~seqlab.report.EvaluationSummary` per task.
        run_dir: the run directory.
    """

    def __init__(self, model: CodeSeq2Seq, config: Seq2SeqConfig, vocab: Vocabulary,
                 tasks: Sequence[str], langs: Sequence[str], splits: Any = None,
                 run_dir: Path | None = None) -> None:
        self.model = model
        self.config = config
        self.vocab = vocab
        self.tasks = tuple(tasks)
        self.langs = tuple(langs)
        self.splits = splits
        self.run_dir = run_dir
        self.evaluation: dict[str, Any] = {}
        self.summaries: dict[str, EvaluationSummary] = {}
        self.seed = config.seed
        #: per task of :data:`RERANKED`: the n-gram expert (fitted on the training split)
        #: and the product of experts' weights chosen on the validation split
        self.experts: dict[str, NGramReranker | NGramCompleter] = {}
        self.rerankings: dict[str, Reranking] = {}
        self.expert_pairs: list[CodePair] = []
        #: what :meth:`choose_rerankings` measured on the validation split, per task
        self.reranking_notes: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        c = self.config
        return (f"CodeOptimizer(tasks={'/'.join(self.tasks)}, lang={'/'.join(self.langs)}, "
                f"hidden={c.hidden_size}, layers={c.num_layers}, vocab={c.vocab_size}, max_len={c.max_len}, "
                f"run_dir={self.run_dir})")

    def _repr_html_(self) -> str:
        if not self.summaries:
            return recipe_html(repr(self), None, self.run_dir)
        return "".join(recipe_html(f"{repr(self)}: {task}" if i == 0 else task, s,
                                   self.run_dir if i == len(self.summaries) - 1 else None)
                       for i, (task, s) in enumerate(self.summaries.items()))

    # ------------------------------------------------------------------ use
    def _lang(self, code: str, lang: str | None) -> str:
        if lang is not None:
            return check_lang(lang)
        return self.langs[0] if len(self.langs) == 1 else guess_lang(code, "")

    def predict(self, task: str, sources: Sequence[str], langs: Sequence[str], mode: str | None = None,
                n: int = 1, assume_bug: bool = True) -> list[list[str]]:
        """Up to ``n`` outputs per source (best first) for ``task``, by ``mode`` (default the
        task's: :data:`DEFAULT_MODES`); ``assume_bug`` as in :meth:`fix`. Sources longer than
        ``max_len`` tokens are refused."""
        check_task(task)
        if task not in self.tasks:
            raise ValueError(f"task: this model was trained on {list(self.tasks)}, not {task!r}")
        mode = DEFAULT_MODES[task] if mode is None else mode
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES} or None (the task's default), got {mode!r}")
        if n < 1:
            raise ValueError(f"n: expected a positive number of outputs, got {n}")
        chunks = self._chunks(task, sources, langs, mode, n)
        if mode != "hybrid":
            return [outs for chunk in chunks for outs in chunk]
        reranking = self._reranking(task, assume_bug)
        return [[cand.text for cand in reranking.rank(pool)][:n] for chunk in chunks for pool in chunk]

    def _reranking(self, task: str, assume_bug: bool = True) -> Reranking:
        """The weights that rank ``task``'s hybrid candidates (``assume_bug=False``: those of
        :data:`MAYBE_CORRECT`); a model without them ranks by its own score, the unchanged
        snippet competing."""
        key = MAYBE_CORRECT if task == "bug_fix" and not assume_bug else task
        return self.rerankings.get(key, Reranking())

    def fit_experts(self, train: Sequence[CodePair]) -> None:
        """Fits the n-gram experts of the re-ranking on ``train`` (the training split):
        the bug-fix reranker's language model of correct code and the line completer."""
        self.expert_pairs = list(train)
        self.experts = {}
        if "bug_fix" in self.tasks:
            self.experts["bug_fix"] = NGramReranker().fit(train)
        if "completion" in self.tasks:
            self.experts["completion"] = NGramCompleter().fit(train)

    def choose_rerankings(self, val: Sequence[CodePair]) -> dict[str, dict[str, Any]]:
        """Chooses each re-ranked task's product-of-experts weights (:mod:`seqlab.models.code.rerank`)
        by exact match on ``val`` (the validation split, decoded in the task's default mode)
        and keeps them for :meth:`fix` and :meth:`complete`. Returns per task the weights,
        the validation exact match with them and with the model alone, and ``n``."""
        out: dict[str, dict[str, Any]] = {}
        for task in RERANKED:
            held = [p for p in val if p.task == task and p.lang in self.langs
                    and len(p.source_tokens) <= self.config.max_len]
            if task not in self.experts or not held:
                continue
            pools = self.candidate_pools(task, [p.source for p in held], [p.lang for p in held])
            targets = [p.target for p in held]
            biases = SOURCE_BIASES if task == "bug_fix" else (0.0,)
            chosen, em = choose_reranking(pools, targets, WEIGHTS, biases, SEARCH_BIASES,
                                          similarity=task == "completion")
            em_alone = exact_match(pools, targets, Reranking())
            self.rerankings[task] = chosen
            out[task] = {"validation_exact_match": em, "validation_exact_match_model_alone": em_alone,
                         "validation_ties_broken_by": "edit_similarity" if task == "completion" else None,
                         "validation_n": len(held)}
            if task == "bug_fix":  # the same units without their bug: correct code, to be kept
                clean = self.candidate_pools(task, targets, [p.lang for p in held])
                mixed, accuracy = choose_reranking([*pools, *clean], [*targets, *targets], WEIGHTS,
                                                   MAYBE_CORRECT_SOURCE_BIASES, SEARCH_BIASES)
                self.rerankings[MAYBE_CORRECT] = mixed
                out[MAYBE_CORRECT] = {
                    "validation_accuracy": accuracy,
                    "validation_exact_match": exact_match(pools, targets, mixed),
                    "validation_correct_kept": exact_match(clean, targets, mixed),
                    "validation_n": len(held), "validation_correct_n": len(held)}
        self.reranking_notes = out
        return {task: self.reranking(task) for task in out}

    def reranking(self, task: str) -> dict[str, Any]:
        """The product-of-experts weights of ``task`` and what they scored on the validation
        split (see :meth:`choose_rerankings`)."""
        return {**self.rerankings[task].to_dict(), **self.reranking_notes.get(task, {})}

    def candidate_pools(self, task: str, sources: Sequence[str], langs: Sequence[str],
                        n: int = 1) -> list[list[Candidate]]:
        """Every candidate the hybrid mode of ``task`` weighs, per source, unranked (see
        :meth:`_hybrid_pool`)."""
        chunks = self._chunks(task, sources, langs, "hybrid", n)
        return [pool for pools in chunks for pool in pools]

    def _chunks(self, task: str, sources: Sequence[str], langs: Sequence[str], mode: str,
                n: int) -> list[Any]:
        """Per batch of :data:`_DECODE_BATCH` sources, :meth:`_predict_batch`'s result."""
        rng = np.random.default_rng(self.seed)
        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            for start in range(0, len(sources), _DECODE_BATCH):
                chunk = range(start, min(start + _DECODE_BATCH, len(sources)))
                out.append(self._predict_batch(task, [sources[i] for i in chunk], [langs[i] for i in chunk],
                                               mode, n, rng))
        finally:
            if was_training:
                self.model.train()
        return out

    def _predict_batch(self, task: str, sources: list[str], langs: list[str], mode: str, n: int,
                       rng: np.random.Generator) -> Any:
        """Hybrid mode: each source's candidate pool (:meth:`_hybrid_pool`), unranked; other
        modes: up to ``n`` output texts per source, best first."""
        limit = self.config.max_len
        encoded = []
        for k, (src, lang) in enumerate(zip(sources, langs)):
            try:
                tokens = tokenize_code(src, lang)
            except CodeSyntaxError as e:
                raise ValueError(f"input {k}: the {lang} source does not tokenise: {e}") from e
            if not tokens:
                raise ValueError(f"input {k}: empty source")
            if len(tokens) > limit:
                raise ValueError(f"input {k}: {len(tokens)} tokens, longer than the model's max_len={limit}; "
                                 "pass a shorter snippet")
            encoded.append(source_ids([TASK_TAGS[task], *tokens], self.vocab))
        lengths = np.array([len(e[0]) for e in encoded], dtype=np.int64)
        ids = np.zeros((len(encoded), int(lengths.max())), dtype=np.int64)
        ext = np.zeros_like(ids)
        for b, (i, x, _) in enumerate(encoded):
            ids[b, : len(i)], ext[b, : len(x)] = i, x
        oovs = [e[2] for e in encoded]
        extended = len(self.vocab) + max(len(o) for o in oovs)

        def text(b: int, hy: Hypothesis) -> str:
            return "".join(decode_ids(hy.tokens, self.vocab, oovs[b]))

        c = self.config
        if mode == "hybrid":  # the parse check re-ranks each example's candidates: one session each
            found = []
            for b in range(len(sources)):
                one = DecoderSession(self.model, ids[b : b + 1], lengths[b : b + 1], ext[b : b + 1],
                                     len(self.vocab) + len(oovs[b]), UNK_ID)
                found.append(self._hybrid_pool(task, one, sources[b], langs[b], oovs[b], n, rng))
            return found
        else:
            session = MaskedSession(DecoderSession(self.model, ids, lengths, ext, extended, UNK_ID),
                                    self._banned_ids())
            results = decode(session, mode, limit + 1, EOS_ID, n=n, width=c.beam_width,
                             alpha=c.length_penalty, rng=rng)
        return [[text(b, hy) for hy in hyps] or [""] for b, hyps in enumerate(results)]

    def _hybrid_pool(self, task: str, session: DecoderSession, source: str, lang: str, oovs: list[str],
                     n: int, rng: np.random.Generator) -> list[Candidate]:
        """One source's candidates in hybrid mode: the beams (and samples where the model is
        unsure, :func:`~seqlab.models.code.search.hybrid_pool`), plus for ``bug_fix`` the
        source and every candidate one edit of the bug classes away, for ``completion`` the
        n-gram completer's line, the prefix's lines and the :data:`FREQUENT_LINES` most
        frequent next lines of the training pairs, re-indented, each scored by the model; with
        the n-gram expert's log-probability when the task has one (else 0). Distinct texts."""
        c = self.config
        search = MaskedSession(session, self._banned_ids())  # scoring given outputs: unmasked
        found = hybrid_pool(search, c.beam_width, n, c.max_len + 1, EOS_ID, rng, alpha=c.length_penalty)[0]
        scored = {"".join(decode_ids(hy.tokens, self.vocab, oovs)): hy for hy in found}
        searched = set(scored)
        expert = self.experts.get(task)
        extra: list[list[str]] = []
        if task == "bug_fix":
            tokens = tokenize_code(source, lang)
            extra = [tokens, *(e.apply(tokens) for e in enumerate_edits(tokens, lang, source))]
        elif task == "completion" and isinstance(expert, NGramCompleter):
            lines = [expert.complete(source, lang)]
            lines += completion_candidates(source, lang, expert.frequent_lines(lang, FREQUENT_LINES))
            for line in dict.fromkeys(ln for ln in lines if ln.strip()):
                try:
                    extra.append(tokenize_code(line, lang))
                except CodeSyntaxError:  # a line cut short (an open bracket): not a candidate
                    continue
        extra = [toks for toks in extra if len(toks) <= c.max_len]
        searched -= {"".join(toks) for toks in extra}
        extra = [toks for text, toks in {"".join(toks): toks for toks in extra}.items() if text not in scored]
        if extra:
            # a token neither in the vocabulary nor in the source (a new literal) is scored as
            # the unknown token: the model's mass of every token it cannot name
            hyps = score_targets(session, np.zeros(len(extra), np.int64),
                                 [self._target_ids(toks, oovs) for toks in extra], EOS_ID, c.length_penalty)
            scored.update(("".join(toks), hy) for toks, hy in zip(extra, hyps))
        texts = list(scored)
        if isinstance(expert, NGramReranker):
            ngram = expert.gains(source, lang, texts)
        elif isinstance(expert, NGramCompleter):
            ngram = [expert.line_logprob(source, t, lang) for t in texts]
        else:
            ngram = [0.0] * len(texts)
        pair = CodePair(task, lang, source, "")
        # a completion is a line of code: one of blanks only is never the next statement
        return [Candidate(t, scored[t].log_prob, scored[t].score, g, t == source, t in searched,
                          _parses(pair, t) and (task != "completion" or bool(t.strip())))
                for t, g in zip(texts, ngram)]

    def _banned_ids(self) -> list[int]:
        """The ids no decoding mode may emit: padding, the unknown token, the start token and
        the task tags (out-of-vocabulary source tokens are copied through their extended ids)."""
        tags = [self.vocab.stoi[t] for t in TASK_TAGS.values() if t in self.vocab.stoi]
        return [PAD_ID, UNK_ID, BOS_ID, *tags]

    def _target_ids(self, tokens: Sequence[str], oovs: list[str]) -> list[int]:
        """Extended ids of an output's tokens: the vocabulary's, else the source's own
        (copied), else the unknown token."""
        index = {t: len(self.vocab) + k for k, t in enumerate(oovs)}
        return [self.vocab.stoi.get(t, index.get(t, UNK_ID)) for t in tokens]

    def _one(self, task: str, code: str, mode: str | None, n: int, lang: str | None,
             assume_bug: bool = True) -> str | list[str]:
        if not isinstance(code, str):
            raise TypeError(f"expected the code as a str, got {type(code).__name__}")
        outs = self.predict(task, [code], [self._lang(code, lang)], mode, n, assume_bug)[0]
        return outs[0] if n == 1 else outs

    def fix(self, code: str, mode: str | None = None, n: int = 1, lang: str | None = None,
            assume_bug: bool = True) -> str | list[str]:
        """The snippet with its bug fixed, whole, with its indentation and surrounding blank
        lines kept; ``n > 1``: a list of ``n`` candidates, best first. Any snippet of up to
        ``max_len`` tokens: one line, a few lines, a function. Default mode hybrid: the beams
        and every candidate one edit of the bug classes away (and the snippet itself), scored
        by the model and re-ranked with the n-gram expert by the weights chosen on the
        validation split (:attr:`rerankings`), those that do not parse last;
        ``mode="convergent"``: beam search alone.

        ``assume_bug=True`` (the default, the task the model is judged on): the snippet holds
        a bug; the weights are chosen on sources that each hold one, and they may rank the
        unchanged snippet last, so that ``fix`` always changes something.
        ``assume_bug=False``: the snippet may be correct; the unchanged snippet competes with
        the repairs, by weights chosen on the validation units both with their bug and
        without it (``reranking("bug_fix_maybe_correct")``), so correct code is mostly
        returned as it is, at the price of fewer bugs fixed (the report's
        ``model_assume_bug_false`` row and its ``correct_code`` section give both rates)."""
        if not isinstance(code, str):
            raise TypeError(f"fix: expected the code as a str, got {type(code).__name__}")
        body = textwrap.dedent(code)
        indent = _common_indent(code)
        head = body[: len(body) - len(body.lstrip())]
        tail = body[len(body.rstrip()):]
        core = body.strip()
        if not core:
            return code if n == 1 else [code]
        outs = self._one("bug_fix", core, mode, n, lang, assume_bug)

        def whole(fixed: str) -> str:
            return textwrap.indent(head + fixed + tail, indent) if indent else head + fixed + tail

        return whole(outs) if isinstance(outs, str) else [whole(o) for o in outs]

    def complete(self, prefix: str, mode: str | None = None, n: int = 1,
                 lang: str | None = None) -> str | list[str]:
        """The next line after ``prefix`` (the lines of a function so far); default mode hybrid
        (beam search, sampling when unsure, the n-gram completer's line, the prefix's lines and
        the most frequent next lines of the training code re-indented, re-ranked with the
        n-gram expert by the weights chosen on the validation split; lines that do not lex or
        hold only blanks ranked last)."""
        return self._one("completion", prefix, mode, n, lang)

    def generate(self, spec: str, mode: str | None = None, n: int = 1,
                 lang: str | None = None) -> str | list[str]:
        """A body for ``spec`` (a signature with its docstring or leading comment); default
        mode divergent (sampling; ``n`` distinct bodies)."""
        return self._one("generation", spec, mode, n, lang)

    def evaluate(self, data: Any = None, real_edits: str | Path | None = None) -> dict[str, Any]:
        """Per task on the held-out split (or on ``data``: pairs as :func:`seqlab.code_optimizer`
        takes them), the model's scores with the task's default mode beside the baselines,
        each with its sample count (``n``), and the real-edit scores when ``real_edits`` (a
        JSONL of bug_fix pairs) is given.

        Returns ``{task: {"model": scores, baseline: scores, ..., "mode": str,
        "loses_to": [baselines that beat it on exact match]}, "real_edits": {...}}``;
        ``bug_fix`` also holds ``"model_beam_search"``: the model decoded by beam search alone
        (mode convergent), beside its default mode's one-edit candidates. Each baseline's
        scores hold ``"vs_model"``, the paired comparison of exact matches on the same pairs
        (:func:`seqlab.metrics.paired_exact_match`: ``a_only`` the model's, ``b_only`` the
        baseline's, ``p_value`` of the sign test); the report calls a lead with ``p_value``
        of :data:`SIGNIFICANT` or more not significant. Sources longer than ``max_len``
        tokens are left out of every row, counted in ``"skipped_longer_than_max_len"``.
        """
        from ..data.code.corpus import load_code_data

        train = self.splits.train if self.splits is not None else []
        if data is None:
            if self.splits is None:
                raise ValueError("evaluate(): this model has no held-out split attached; pass data=...")
            test = self.splits.test or self.splits.val
        else:
            c = self.config
            test = load_code_data(data, lang="auto", max_len=c.max_len, unit_len=c.unit_len,
                                  mutants=c.mutants).pairs
        test = [p for p in test if p.task in self.tasks and p.lang in self.langs]
        if not test:
            raise ValueError("evaluate(): no held-out pair of the model's tasks and languages")
        too_long = Counter(p.task for p in test if len(p.source_tokens) > self.config.max_len)
        test = [p for p in test if len(p.source_tokens) <= self.config.max_len]  # the model's and baselines'
        baseline_outputs: dict[str, dict[str, list[str]]] = {}
        baselines = baseline_scores(train, test, outputs=baseline_outputs) if train else {}
        out: dict[str, Any] = {}
        for task in TASKS:
            held = [p for p in test if p.task == task]
            if not held:
                continue
            sources, langs = [p.source for p in held], [p.lang for p in held]
            pools = self.candidate_pools(task, sources, langs) if DEFAULT_MODES[task] == "hybrid" else None
            if pools is not None:
                outputs = [self._best(task, pool) for pool in pools]
            else:
                outputs = [o[0] for o in self.predict(task, sources, langs)]
            model = evaluate_outputs(held, outputs)
            rows: dict[str, Any] = {"model": model}
            if task == "bug_fix" and pools is not None:  # the same pools ranked for maybe-correct code
                kept_if_correct = [self._best(task, pool, assume_bug=False) for pool in pools]
                rows[MAYBE_CORRECT_ROW] = evaluate_outputs(held, kept_if_correct)
            if task in RERANKED and DEFAULT_MODES[task] != "convergent":
                beams = self.predict(task, sources, langs, "convergent")
                rows[BEAM_ROW] = evaluate_outputs(held, [o[0] for o in beams])
            if task in self.rerankings:
                rows["reranking"] = _reranking_note(self.reranking(task))
            rows.update(baselines.get(task, {}))
            add_paired_tests(rows, outputs, baseline_outputs.get(task, {}), [p.target for p in held])
            rows["mode"] = DEFAULT_MODES[task]
            if too_long[task]:
                rows["skipped_longer_than_max_len"] = too_long[task]
            rows["loses_to"] = _loses_to(rows)
            out[task] = rows
        held = [p for p in test if p.task == "bug_fix"]
        if held and DEFAULT_MODES["bug_fix"] == "hybrid":
            out[CORRECT_CODE] = self._correct_code_rows(held, train)
        if real_edits is not None and "bug_fix" in self.tasks and "c" in self.langs:
            out["real_edits"] = real_edit_scores(real_edits, train, self._fix_for_eval)
        self.evaluation = out
        self.summaries = summaries(out)
        return out

    def _best(self, task: str, pool: Sequence[Candidate], assume_bug: bool = True) -> str:
        """The text the hybrid mode returns from ``pool`` ("" for an empty pool)."""
        ranked = self._reranking(task, assume_bug).rank(pool)
        return ranked[0].text if ranked else ""

    def _correct_code_rows(self, held: Sequence[CodePair], train: Sequence[CodePair]) -> dict[str, Any]:
        """``.fix`` on correct code: the held-out bug-fix units themselves as the sources, so
        the right output is the input (``exact_match`` is the share kept as it is): the model
        with ``assume_bug`` True and False, and the n-gram reranker (which may keep the source)."""
        correct = [replace(p, source=p.target) for p in held]
        pools = self.candidate_pools("bug_fix", [p.source for p in correct], [p.lang for p in correct])
        outputs = [self._best("bug_fix", pool) for pool in pools]
        rows: dict[str, Any] = {
            "model": evaluate_outputs(correct, outputs),
            MAYBE_CORRECT_ROW: evaluate_outputs(
                correct, [self._best("bug_fix", pool, assume_bug=False) for pool in pools]),
        }
        if train:
            found: dict[str, dict[str, list[str]]] = {}
            rows.update(baseline_scores(train, correct, outputs=found).get("bug_fix", {}))
            add_paired_tests(rows, outputs, found.get("bug_fix", {}), [p.target for p in correct])
        rows["mode"] = DEFAULT_MODES["bug_fix"]
        rows["loses_to"] = _loses_to(rows)
        return rows

    def _fix_for_eval(self, source: str, lang: str) -> str:
        try:
            return str(self.fix(source, lang=lang))
        except ValueError:  # longer than max_len: returned unchanged, as the baseline would
            return source

    # -------------------------------------------------------------- storage
    def save(self, path: str | Path | None = None) -> Path:
        """Writes ``model.safetensors``, ``model_config.toml`` and ``vocabulary.json`` to
        ``path`` (default: the run directory)."""
        if path is None:
            if self.run_dir is None:
                raise ValueError("save(): no run directory; pass a path")
            path = self.run_dir
        rerank = {task: self.reranking(task) for task in self.rerankings}
        path = save_model_files(path, KIND, self.config, self.model.state_dict(), tasks=list(self.tasks),
                                langs=list(self.langs), rerank=rerank)
        atomic_write_text(path / "vocabulary.json", json.dumps(self.vocab.to_dict()))
        if self.expert_pairs:
            write_pairs_jsonl(self.expert_pairs, path / EXPERT_PAIRS, overwrite=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> CodeOptimizer:
        """Restores a code optimizer written by :meth:`save` (or a run directory)."""
        path = Path(path)

        def sizes(c: Seq2SeqConfig, meta: dict[str, Any]) -> dict[str, int]:
            return {"vocab_size": c.vocab_size, "embedding_dim": c.embedding_dim,
                    "hidden_size": c.hidden_size, "num_layers": c.num_layers, "num_heads": c.num_heads}

        meta, config, weights = read_model_files(path, Seq2SeqConfig.from_dict, sizes)
        vocab = Vocabulary.from_dict(json.loads((path / "vocabulary.json").read_text()))
        model = CodeSeq2Seq(config)
        model.load_state_dict(weights)
        model.eval()
        fitted = cls(model, config, vocab, meta["tasks"], meta["langs"], run_dir=path)
        if (path / EXPERT_PAIRS).is_file():  # the n-gram experts, refitted on the run's training pairs
            fitted.fit_experts(read_pairs_jsonl(path / EXPERT_PAIRS))
            fitted.rerankings = {task: Reranking.from_dict(d) for task, d in meta.get("rerank", {}).items()
                                 if ("bug_fix" if task == MAYBE_CORRECT else task) in fitted.experts}
            fitted.reranking_notes = {task: {k: v for k, v in d.items() if k.startswith("validation")}
                                      for task, d in meta.get("rerank", {}).items()}
        document = saved_evaluation(path)
        if document is not None:
            fitted.evaluation = document.get("results", {})
            fitted.summaries = summaries(fitted.evaluation)
        return fitted


def _common_indent(code: str) -> str:
    lines = [ln for ln in code.splitlines() if ln.strip()]
    if not lines:
        return ""
    first = lines[0][: len(lines[0]) - len(lines[0].lstrip())]
    prefix = first
    for ln in lines[1:]:
        while prefix and not ln.startswith(prefix):
            prefix = prefix[:-1]
    return prefix


# ------------------------------------------------------------- evaluation
def summaries(evaluation: dict[str, Any]) -> dict[str, EvaluationSummary]:
    """One :class:`~seqlab.report.EvaluationSummary` per task of :meth:`CodeOptimizer.evaluate`
    (the model, then the baselines; a note when the model loses to one), and one of the real
    edits when present."""
    out = {}
    for task, rows in evaluation.items():
        table = {name: s for name, s in rows.items() if isinstance(s, dict)}
        if "model" not in table:
            continue
        table = {"model": table["model"], **{k: v for k, v in table.items() if k != "model"}}
        fixes = task in ("bug_fix", "real_edits", CORRECT_CODE)
        keys = [*SCORE_KEYS, *(["unchanged_rate"] if fixes else [])]
        best = table["model"]["exact_match"]
        losers = [n for n, s in table.items() if not n.startswith("model") and s["exact_match"] > best]
        ties = [n for n, s in table.items() if not n.startswith("model") and s["exact_match"] == best]
        if task == "real_edits":
            title = "real edits to C code (Debian patch hunks), never trained on"
        elif task == CORRECT_CODE:
            title = ("bug_fix on correct code: the held-out units without their bug, so the right output is "
                     "the input and exact match is the share kept as it is")
        else:
            title = f"{task}, held-out files, mode {rows.get('mode')}"
        if losers:
            notes = [f"**The model loses to baseline {', '.join(losers)} on exact match.**"]
        elif ties:
            notes = [f"**The model does not beat baseline {', '.join(ties)} on exact match (a tie).**"]
        else:
            unsure = [n for n, s in table.items()
                      if s.get("vs_model", {}).get("p_value", 0.0) >= SIGNIFICANT]
            if unsure:
                paired = "; ".join(_paired_note(n, table[n]["vs_model"]) for n in unsure)
                notes = [f"**The model is ahead of baseline {', '.join(unsure)} on exact match, but not "
                         f"significantly:** {paired}."]
            else:
                tested = [n for n in table if "vs_model" in table[n]]
                notes = ["The model beats every baseline on exact match"
                         + (" (" + "; ".join(_paired_note(n, table[n]["vs_model"]) for n in tested) + ")"
                            if tested else "") + "."]
        if BEAM_ROW in table:
            extra = ("the one-edit candidates of the bug classes and the source" if task == "bug_fix"
                     else "the n-gram completer's line, the prefix's lines and the "
                     f"{FREQUENT_LINES} most frequent next lines of the training code, re-indented")
            notes.append(f"`model` decodes in mode {rows.get('mode')}: beam search plus {extra}, all scored "
                         f"by the model{rows.get('reranking', '')}; `{BEAM_ROW}` is the model's beam search "
                         "alone.")
        if MAYBE_CORRECT_ROW in table and task == "bug_fix":
            notes.append(f"`{MAYBE_CORRECT_ROW}` is `.fix(code, assume_bug=False)`: the same candidates, "
                         "the unchanged snippet competing with the repairs (weights chosen on the validation "
                         "units with and without their bug); see the correct-code section for what it keeps.")
        if task == CORRECT_CODE:
            notes.append("`model` is `.fix(code)`, which assumes a bug and so changes correct code; "
                         f"`{MAYBE_CORRECT_ROW}` is `.fix(code, assume_bug=False)`.")
        out[task] = EvaluationSummary(title, table, int(table["model"]["n"]), "pairs", keys=keys, notes=notes)
    return out


def _loses_to(rows: dict[str, Any]) -> list[str]:
    """The baselines of an evaluation's ``rows`` with a higher exact match than ``rows["model"]``."""
    best = rows["model"]["exact_match"]
    return [name for name, s in rows.items()
            if isinstance(s, dict) and not name.startswith("model") and s["exact_match"] > best]


def _paired_note(name: str, paired: dict[str, Any]) -> str:
    """``"against ngram: the model alone exact on 14 pairs, the baseline alone on 3, sign test
    p = 0.013"``."""
    a = paired["a_only"]
    return (f"against {name}: the model alone exact on {a} pair{'s' if a != 1 else ''}, the baseline alone "
            f"on {paired['b_only']}, two-sided sign test p = {paired['p_value']:.2g}")


def _reranking_note(r: dict[str, Any]) -> str:
    """How a task's candidates are re-ranked, for the report (empty: by the model alone)."""
    chosen = Reranking.from_dict(r)
    if chosen == Reranking():
        return ""
    text = (f" and re-ranked by the model's {'length-normalised ' if chosen.length_normalised else ''}"
            f"log-probability plus {chosen.ngram_weight:g} x the n-gram model's")
    for bias, what in ((chosen.source_bias, "the unchanged source"),
                       (chosen.search_bias, "outputs of the model's own search")):
        if bias:
            text += (f", {what} ranked below every other candidate" if bias == -math.inf
                     else f", {bias:g} for {what}")
    if "validation_n" in r:
        text += (f" (weights chosen on {r['validation_n']} validation pairs: exact match "
                 f"{r['validation_exact_match']:.3f}, "
                 f"model alone {r['validation_exact_match_model_alone']:.3f}"
                 + ("; ties on exact match broken by edit similarity"
                    if r.get("validation_ties_broken_by") == "edit_similarity" else "") + ")")
    return text


def _print_evaluation(sums: dict[str, EvaluationSummary]) -> None:
    for task, s in sums.items():
        keys = s.shown_keys()
        print(f"{task}: {s.sample_line()}")
        for note in s.notes:
            print(f"  {note.replace('**', '')}")
        width = max(16, *(len(name) for name in s.rows))
        print(f"  {'':{width}s}" + "".join(f"{k:>17s}" for k in keys))
        for name, row in s.rows.items():
            print(f"  {name:{width}s}" + "".join(f"{row.get(k, float('nan')):17.4f}" for k in keys))


def _benchmark(fitted: CodeOptimizer, test: Sequence[CodePair], trainer: Trainer,
               train: EncodedPairs) -> dict[str, Any]:
    """Latency of one call per mode (the first held-out source of each task) and training
    tokens per second (target tokens of the epochs run over the training seconds)."""
    latency: dict[str, dict[str, float]] = {}
    for task in fitted.tasks:
        limit = fitted.config.max_len
        pair = next((p for p in test if p.task == task and len(p.source_tokens) <= limit), None)
        if pair is None:
            continue
        latency[task] = {}
        for mode in MODES:
            start = time.perf_counter()
            fitted.predict(task, [pair.source], [pair.lang], mode)
            latency[task][mode] = time.perf_counter() - start
    epochs = len(trainer.history)
    tokens = int(train.tgt_len.sum()) * epochs
    seconds = trainer.train_seconds
    return {
        "latency_seconds_per_call": latency,
        "training": {"target_tokens": tokens, "epochs": epochs, "seconds": seconds,
                     "tokens_per_second": tokens / seconds if seconds > 0 else None},
    }


# ---------------------------------------------------------------- training
def corpus_splits(data: Any, task: str, lang: str, config: Seq2SeqConfig) -> tuple[Any, Any]:
    """The corpus a run of ``config`` mines or reads from ``data`` (see :func:`code_optimizer`)
    and its split by file: ``(CodeCorpus, CodeSplits)``; the same for the same arguments."""
    from ..data.code.corpus import load_code_data, mine_completions
    from ..data.code.splits import add_training_pairs, split_by_file

    corpus = load_code_data(data, task=task, lang=lang, max_len=config.max_len, seed=config.seed,
                            unit_len=config.unit_len, mutants=config.mutants)
    splits = split_by_file(corpus.pairs, seed=config.seed)
    if config.train_completions > 2 and any(p.task == "completion" for p in splits.train):
        files = {p.file for p in splits.train}
        splits = add_training_pairs(splits, mine_completions(corpus, files, config.train_completions))
    return corpus, splits


def _step(m: CodeSeq2Seq, batch: EncodedPairs) -> Tensor:
    return m(batch.src_ids, batch.src_len, batch.src_ext, batch.tgt_in, batch.tgt_out, batch.tgt_len,
             batch.vocab_size + batch.max_oov)


def code_optimizer(
    data: Any = None,
    task: str = "all",
    lang: str = "auto",
    preset: str | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    *,
    other_data: bool = False,
    real_edits: str | Path | None = None,
    progress: bool | None = None,
    verbose: bool = True,
    **overrides: Any,
) -> CodeOptimizer:
    """Trains, evaluates and reports a code optimizer (bug fixing, completion, generation) in one line.

    Args:
        data: None (the default corpus: the interpreter's standard library and the machine's C
            headers, see :mod:`seqlab.data.code.corpus`), a folder of ``.py``/``.c``/``.h``
            sources to mine, one source file, a JSON Lines file of ``{"task", "source",
            "target"[, "lang"]}`` pairs, or a list of such dicts.
        task: ``"bug_fix"``, ``"completion"``, ``"generation"`` or ``"all"``.
        lang: ``"python"``, ``"c"`` or ``"auto"`` (both, per file or record).
        preset: ``"tiny"``, ``"small"`` (default), ``"medium"`` or ``"original"``
            (:data:`seqlab.models.code.PRESETS`).
        out: the run directory (default ``runs/code_optimizer-<time>``); an existing run is
            refused before any work.
        resume: a run directory to continue from its last checkpoint, on its data and
            settings; ``epochs=N`` may change.
        other_data: with ``resume``, train on ``data`` although it is not the run's data.
        real_edits: a JSONL of real bug_fix edits to score ``.fix`` on (default: Debian's
            patch hunks in ``../shared/data`` when present; never trained on).
        overrides: :class:`~seqlab.models.code.Seq2SeqConfig` fields (``epochs=5``,
            ``hidden_size=256``, ``seed=1``, ...).

    Sources and targets longer than ``max_len`` tokens are not mined; pairs read from JSON
    Lines that are longer are truncated for training and counted in the report.

    Returns:
        The :class:`CodeOptimizer` (``.fix``, ``.complete``, ``.generate``, ``.evaluate``,
        ``.save``); its run directory holds ``model.safetensors``, ``model_config.toml``,
        ``vocabulary.json``, ``training_metrics.json``/``.png``, ``training_report.md``,
        ``evaluation.json`` and ``benchmark_results.json``.

    Raises:
        ValueError: an unknown task, language, preset or mode; CodeDataError (a ValueError)
            for unusable data, naming the file and line.
        FileExistsError: ``out`` already holds a run.
    """
    from ..data.code.encoding import build_code_vocabulary

    if task != "all":
        check_task(task)
    if lang != "auto":
        check_lang(lang)
    run_dir: Path
    if resume is not None:
        run_dir = Path(resume)
        record = read_run(run_dir, KIND)
        data = resume_data(run_dir, record, data, other_data)
        arguments = record.get("arguments", {})
        task, lang = arguments.get("task", task), arguments.get("lang", lang)
        config = resumed_config(run_dir, KIND, preset, overrides, Seq2SeqConfig.from_dict, make_preset)
    else:
        preset = preset or "small"
        config = make_preset(preset, **overrides)
        run_dir = claim_run_dir(out, KIND, data, {"task": task, "lang": lang, "preset": preset,
                                                  "overrides": dict(overrides)})
    start = time.perf_counter()
    corpus, splits = corpus_splits(data, task, lang, config)
    if not splits.train:
        raise CodeDataError(f"{corpus.source}: no training pairs after the split by file")
    tasks = [t for t in TASKS if any(p.task == t for p in splits.train)]
    langs = [lg for lg in LANGS if any(p.lang == lg for p in splits.train)]
    vocab = build_code_vocabulary([tagged(p) for p in splits.train], max_size=config.vocab_size)
    model_config = config.with_overrides(vocab_size=len(vocab))
    limit = config.max_len + 1  # the task tag
    train_enc = encode_pairs([tagged(p) for p in splits.train], vocab, limit, config.max_len)
    val_data = None
    if splits.val:
        val_data = CodeBatches(encode_pairs([tagged(p) for p in splits.val], vocab, limit, config.max_len),
                               batch_size=config.batch_size, shuffle=False)
    if verbose:
        counts = ", ".join(f"{k} {v}" for k, v in corpus.counts().items())
        print(f"seqlab code optimizer: {corpus.source}; {len(corpus.pairs)} pairs ({counts}); split by file: "
              f"{len(splits.train)} train, {len(splits.val)} val, {len(splits.test)} test; vocabulary "
              f"{len(vocab)}", flush=True)
        if splits.added_to_train:
            print(f"{splits.added_to_train} more completion pairs in training: up to "
                  f"{config.train_completions} cut points per function of the training files (held-out "
                  "files: 2)", flush=True)
        if train_enc.truncated_source or train_enc.truncated_target:
            print(f"note: {train_enc.truncated_source} sources and {train_enc.truncated_target} targets "
                  f"longer than max_len={config.max_len} were truncated for training")
    from ..random import manual_seed

    manual_seed(config.seed)
    model = CodeSeq2Seq(model_config)
    optimizer = AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    callbacks: list[Any] = [Checkpoint(monitor="val_loss" if val_data is not None else None)]
    if val_data is not None:
        callbacks.append(EarlyStopping("val_loss", patience=config.patience))
        if config.plateau_factor < 1.0:
            callbacks.append(ReduceLROnPlateau("val_loss", factor=config.plateau_factor,
                                               patience=config.plateau_patience))
    trainer = Trainer(
        model, None, optimizer, CodeBatches(train_enc, batch_size=config.batch_size), val_data,
        epochs=config.epochs, clip_grad_norm=config.clip_grad_norm, seed=config.seed, out_dir=run_dir,
        resume=resume is not None, callbacks=callbacks, progress=progress, step_fn=_step,
        config={"kind": KIND, **config.to_dict()}, verbose=verbose,
    )
    with interruptible(run_dir, KIND):
        trainer.fit()
    model.eval()
    fitted = CodeOptimizer(model, model_config, vocab, tasks, langs, splits, run_dir)
    fitted.fit_experts(splits.train)
    if splits.val:
        fitted.choose_rerankings(splits.val)
    fitted.save(run_dir)
    edits = Path(real_edits) if real_edits is not None else _real_edits_file()
    evaluation = fitted.evaluate(real_edits=edits)
    test = splits.test or splits.val
    write_json(run_dir / "evaluation.json", {
        "results": evaluation,
        "data": {"source": corpus.source, "files": corpus.files, "skipped_files": len(corpus.skipped),
                 "pairs": corpus.counts(), "duplicates_removed": splits.duplicates_removed,
                 "splits": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
                 "completion_pairs_added_to_train": splits.added_to_train,
                 "truncated_for_training": {"sources": train_enc.truncated_source,
                                            "targets": train_enc.truncated_target}},
        "real_edits_file": None if edits is None else str(edits),
        "reranking": {task: fitted.reranking(task) for task in fitted.rerankings},
        "seconds": time.perf_counter() - start,
    })
    write_json(run_dir / "benchmark_results.json", _benchmark(fitted, test, trainer, train_enc))
    files = ("Files: [evaluation.json](evaluation.json), [benchmark_results.json](benchmark_results.json), "
             "[model_config.toml](model_config.toml), [vocabulary.json](vocabulary.json)")
    names = list(fitted.summaries)
    for name, summary in fitted.summaries.items():
        append_to_report(run_dir, summary, [files] if name == names[-1] else [])
    if verbose:
        _print_evaluation(fitted.summaries)
        print(f"report: {run_dir / 'training_report.md'}")
    return fitted

