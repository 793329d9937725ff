"""Re-ranking a task's candidates by a product of experts: the model and an n-gram model.

A candidate output (a beam, a sample, a one-edit repair of a bug-fix source, the n-gram
completer's line) is ranked by

    model + ngram_weight * n-gram log-probability
          + source_bias * [output == source] + search_bias * [found by search, not proposed]

where ``model`` is the model's summed log-probability of the output (``length_normalised``:
over GNMT's length penalty, as the beams are ranked), the n-gram term is relative to the
source for ``bug_fix`` (:meth:`NGramReranker.gains
<seqlab.models.code.baselines.NGramReranker.gains>`) and the next line's log-probability for
``completion`` (:meth:`NGramCompleter.line_logprob
<seqlab.models.code.baselines.NGramCompleter.line_logprob>`), and outputs that do not parse
come last. A weighted sum of log-probabilities is a product of the two distributions raised
to powers (a product of experts): the n-gram model knows the local idiom of the training
code, the model reads the whole source. "Proposed" candidates are those the task brings
beside the model's own search (the source and its one-edit repairs; the n-gram line); both
experts prefer short outputs, and a short broken beam can outscore the repair, which the
search bias weighs. The weights are chosen on the validation split
(:func:`choose_reranking`), never on the held-out test files; ``Reranking()`` ranks by the
model's length-normalised score alone, as beam search does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ...metrics.code import edit_similarity

#: the grids :func:`choose_reranking` searches
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
SOURCE_BIASES = (0.0, -1.0, -2.0, -5.0, -10.0, -math.inf)
#: the source biases searched when the source may be correct (``fix(..., assume_bug=False)``):
#: a positive bias keeps the snippet unless a repair outscores it by that much; the grid
#: holds :data:`SOURCE_BIASES` too, so the choice is at least as good on the mixed set
MAYBE_CORRECT_SOURCE_BIASES = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, *SOURCE_BIASES)
SEARCH_BIASES = (0.0, -2.0, -5.0, -10.0, -math.inf)


@dataclass(frozen=True)
class Candidate:
    """One candidate output of one example: ``text``; the model's summed log-probability
    ``log_prob`` (end token included) and ``score`` (over GNMT's length penalty); the n-gram
    log-probability ``ngram``; ``source`` (the output equals the source); ``searched``
    (found by beam search or sampling and not among the task's proposals); ``valid`` (it
    parses)."""

    text: str
    log_prob: float
    score: float
    ngram: float
    source: bool
    searched: bool
    valid: bool


def _terms(c: Candidate) -> tuple[float, float, float, float, float]:
    return c.log_prob, c.score, c.ngram, float(c.source), float(c.searched)


@dataclass(frozen=True)
class Reranking:
    """The product of experts' weights (see the module docstring)."""

    ngram_weight: float = 0.0
    source_bias: float = 0.0
    search_bias: float = 0.0
    length_normalised: bool = True

    def scores(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """The candidates' combined log-scores (-inf for those a -inf bias excludes)."""
        if not candidates:
            return np.zeros(0)
        t = np.array([_terms(c) for c in candidates], dtype=np.float64).reshape(-1, 5)
        return self._combine(t)

    def _combine(self, t: np.ndarray) -> np.ndarray:
        s = t[:, 1] if self.length_normalised else t[:, 0]
        if self.ngram_weight:
            s = s + self.ngram_weight * t[:, 2]
        for bias, flag in ((self.source_bias, t[:, 3]), (self.search_bias, t[:, 4])):
            if bias:
                s = s + np.where(flag > 0, bias, 0.0)
        return np.where(np.isnan(s), -np.inf, s)

    def rank(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The candidates best first: those that parse first, then by :meth:`scores`
        (ties: the order given)."""
        scores = self.scores(candidates)
        order = sorted(range(len(candidates)), key=lambda i: (not candidates[i].valid, -scores[i]))
        return [candidates[i] for i in order]

    def to_dict(self) -> dict[str, Any]:
        """Plain values (``-inf`` as the string ``"-inf"``, which JSON lacks)."""
        return {k: ("-inf" if v == -math.inf else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reranking:
        """The weights of :meth:`to_dict` (other keys, such as validation figures, ignored)."""
        return cls(float(d.get("ngram_weight", 0.0)), float(d.get("source_bias", 0.0)),
                   float(d.get("search_bias", 0.0)), bool(d.get("length_normalised", True)))


def exact_match(pools: Sequence[Sequence[Candidate]], targets: Sequence[str], reranking: Reranking) -> float:
    """Share of examples whose best candidate under ``reranking`` equals its target."""
    if len(pools) != len(targets):
        raise ValueError(f"pools and targets: lengths differ, {len(pools)} and {len(targets)}")
    if not pools:
        raise ValueError("pools: no examples")
    hits = [bool(pool) and reranking.rank(pool)[0].text == t for pool, t in zip(pools, targets)]
    return float(np.mean(hits))


def choose_reranking(
    pools: Sequence[Sequence[Candidate]],
    targets: Sequence[str],
    weights: Sequence[float] = WEIGHTS,
    source_biases: Sequence[float] = (0.0,),
    search_biases: Sequence[float] = (0.0,),
    length_normalised: Sequence[bool] = (True, False),
    similarity: bool = False,
) -> tuple[Reranking, float]:
    """The weights of the grid with the best exact match of ``pools`` (each example's
    candidates) against ``targets`` (the validation split), and that exact match. With
    ``similarity``, equal exact matches are told apart by the mean edit similarity of the
    best candidates to the targets (for tasks whose exact match is rare, such as line
    completion). Remaining ties go to the smaller n-gram weight, then to the biases nearest
    0, then to the order of ``length_normalised`` (the model alone wins a tie)."""
    if len(pools) != len(targets):
        raise ValueError(f"pools and targets: lengths differ, {len(pools)} and {len(targets)}")
    if not pools:
        raise ValueError("pools: no examples")
    prepared = []
    for pool, target in zip(pools, targets):
        if not pool:
            continue
        valid = np.array([c.valid for c in pool])
        keep = valid if valid.any() else np.ones_like(valid)  # those that parse rank first
        hit = np.array([c.text == target for c in pool])[keep]
        kept = [c for c, k in zip(pool, keep) if k]
        sim = (np.array([edit_similarity([c.text], [target]) for c in kept]) if similarity
               else np.zeros(len(kept)))
        if hit.any() or similarity:  # else a miss whatever the weights
            prepared.append((np.array([_terms(c) for c in kept], dtype=np.float64), hit, sim))
    best: tuple[Reranking, tuple[float, float]] | None = None
    for w, b, sb, norm in itertools.product(sorted(weights), sorted(source_biases, key=abs),
                                            sorted(search_biases, key=abs), length_normalised):
        r = Reranking(float(w), float(b), float(sb), bool(norm))
        hits, sims = 0, 0.0
        for terms, hit, sim in prepared:
            top = int(np.argmax(r._combine(terms)))  # the first of equal scores, as rank()
            hits += bool(hit[top])
            sims += float(sim[top])
        score = (hits / len(pools), sims)
        if best is None or score > best[1]:
            best = (r, score)
    assert best is not None
    return best[0], best[1][0]
