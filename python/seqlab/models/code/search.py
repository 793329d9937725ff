"""Decoding strategies over an incremental step: greedy, beam search (GNMT length penalty,
a finished mask per example), sampling (temperature, top-k, top-p, n distinct), the
hybrid of the two, and the model's scores of given outputs (:func:`score_targets`), which
lets candidates from elsewhere (the one-edit repairs of a bug-fix source) join a hybrid
pool.

The strategies drive any :class:`StepSession`: ``initial_state()`` gives the states
(B, H) of B examples; ``step(rows, prev, h, c)`` advances N rows (row n continuing example
``rows[n]`` after token ``prev[n]``, or from the start when ``prev`` is None) by one
token and returns the log-probabilities (N, X) of the next token's id and the new
states, as new arrays the caller may change (:class:`MaskedSession` masks in
place). The work of a step (LSTM, attention, copy mixture) is one C++ call
(:class:`seqlab.models.code.seq2seq.DecoderSession`); the strategies only pick tokens.
A session may also offer ``step_top_k(rows, prev, h, c, k)``, returning each row's k
most likely next ids (largest first) and their log-probabilities instead of the whole
(N, X) array: beam search then reads only those (a beam's survivors are among its
rows' k best tokens), and falls back to a top-k of ``step``'s output otherwise.
Every choice depends only on the example's own rows, so the results do not depend on
which other examples share the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class StepSession(Protocol):
    batch: int

    def initial_state(self) -> tuple[np.ndarray, np.ndarray]: ...

    def step(
        self, rows: np.ndarray, prev: np.ndarray | None, h: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Hypothesis:
    """One output: ``tokens`` (extended ids, without the end token), ``log_prob`` (their
    summed log-probability, the end token's included when it was produced), ``score``
    (``log_prob`` over the GNMT length penalty) and ``finished`` (the end token produced)."""

    tokens: tuple[int, ...]
    log_prob: float
    score: float
    finished: bool

    @property
    def mean_log_prob(self) -> float:
        """Mean log-probability per produced token (the end token counted)."""
        return self.log_prob / max(1, len(self.tokens) + int(self.finished))


class MaskedSession:
    """A :class:`StepSession` that never emits the ``banned`` ids (the unknown token, the
    padding and start tokens, the task tags): their log-probabilities are -inf in
    :meth:`step` and they are left out of :meth:`step_top_k`, so no decoding mode (greedy,
    beam search, sampling) can choose them. Copies of out-of-vocabulary source tokens
    (extended ids past the vocabulary) stay allowed. Scoring given outputs
    (:func:`score_targets`) should use the unmasked session: a candidate holding a token
    the model cannot name is scored as the unknown token there."""

    def __init__(self, session: StepSession, banned: Sequence[int]) -> None:
        self.session = session
        self.batch = session.batch
        self.banned = np.unique(np.asarray(list(banned), dtype=np.int64))

    def initial_state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.session.initial_state()

    def step(
        self, rows: np.ndarray, prev: np.ndarray | None, h: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logp, h_new, c_new = self.session.step(rows, prev, h, c)  # a new array: masked in place
        logp[:, self.banned[self.banned < logp.shape[1]]] = -np.inf
        return logp, h_new, c_new

    def step_top_k(
        self, rows: np.ndarray, prev: np.ndarray | None, h: np.ndarray, c: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The inner session's ``k + len(banned)`` best ids, the banned ones dropped: each
        row's k best allowed ids (largest first) and their log-probabilities."""
        values, ids, h_new, c_new = _step_top_k(self.session, rows, prev, h, c, k + self.banned.size)
        allowed = ~np.isin(ids, self.banned)
        order = np.argsort(~allowed, axis=1, kind="stable")[:, :k]  # allowed first, in order
        values = np.take_along_axis(values, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1)
        values = np.where(np.take_along_axis(allowed, order, axis=1), values, -np.inf)
        return values, ids, h_new, c_new


def length_penalty(length: np.ndarray | int, alpha: float) -> np.ndarray:
    """GNMT's ``((5 + length) / 6) ** alpha`` (Wu et al. 2016)."""
    return ((5.0 + np.asarray(length, dtype=np.float64)) / 6.0) ** alpha


def _hypothesis(tokens: Sequence[int], log_prob: float, eos_id: int, alpha: float) -> Hypothesis:
    toks = list(tokens)
    finished = eos_id in toks
    if finished:
        toks = toks[: toks.index(eos_id)]
    produced = len(toks) + int(finished)
    return Hypothesis(
        tuple(int(t) for t in toks),
        float(log_prob),
        float(log_prob / length_penalty(max(produced, 1), alpha)),
        finished,
    )


def _decode_rows(
    session: StepSession,
    rows: np.ndarray,
    h: np.ndarray,
    c: np.ndarray,
    max_len: int,
    eos_id: int,
    choose: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """One output per row (row n continues example ``rows[n]`` from states ``h[n]``, ``c[n]``,
    updated in place), token by token until every row has produced the end token or
    ``max_len`` tokens; ``choose`` maps the live rows' log-probabilities (N, X) to their
    next tokens (N,). Returns the tokens (M, T), padded with the end token, and each row's
    summed log-probability (M,)."""
    m = rows.size
    tokens = np.zeros((m, 0), dtype=np.int64)
    log_prob = np.zeros(m)
    done = np.zeros(m, dtype=bool)
    prev: np.ndarray | None = None
    for _ in range(max_len):
        live = np.flatnonzero(~done)
        logp, h_live, c_live = session.step(
            rows[live], None if prev is None else prev[live], h[live], c[live]
        )
        token = np.full(m, eos_id, dtype=np.int64)
        token[live] = choose(logp)
        log_prob[live] += logp[np.arange(live.size), token[live]]
        h[live], c[live] = h_live, c_live
        tokens = np.concatenate([tokens, token[:, None]], axis=1)
        done |= token == eos_id
        prev = token
        if done.all():
            break
    return tokens, log_prob


def greedy(session: StepSession, max_len: int, eos_id: int, alpha: float = 0.6) -> list[Hypothesis]:
    """The most likely token at every step, per example, until the end token or ``max_len``."""
    h, c = session.initial_state()
    rows = np.arange(session.batch, dtype=np.int64)
    tokens, log_prob = _decode_rows(session, rows, h, c, max_len, eos_id, lambda logp: logp.argmax(axis=1))
    return [_hypothesis(tokens[b], log_prob[b], eos_id, alpha) for b in range(session.batch)]


def _step_top_k(
    session: StepSession, rows: np.ndarray, prev: np.ndarray | None, h: np.ndarray, c: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each row's min(k, X) most likely next ids (N, k') and their log-probabilities,
    largest first, and the new states: the session's ``step_top_k`` when it has one,
    else a top-k of ``step``'s (N, X) log-probabilities."""
    fused = getattr(session, "step_top_k", None)
    if fused is not None:
        return fused(rows, prev, h, c, k)
    logp, h_new, c_new = session.step(rows, prev, h, c)
    X = logp.shape[1]
    kk = min(k, X)
    part = np.argpartition(-logp, kk - 1, axis=1)[:, :kk] if kk < X else np.tile(np.arange(X), (len(logp), 1))
    values = np.take_along_axis(logp, part, axis=1)
    order = np.lexsort((part, -values), axis=1)
    return np.take_along_axis(values, order, axis=1), np.take_along_axis(part, order, axis=1), h_new, c_new


def beam_search(
    session: StepSession, width: int, max_len: int, eos_id: int, alpha: float = 0.6
) -> list[list[Hypothesis]]:
    """Beam search with ``width`` beams per example and GNMT's length penalty.

    At every step each live beam proposes every token; a finished beam proposes only
    itself (its score frozen); the ``width`` best proposals by ``log_prob /
    length_penalty`` survive. Stops when every beam of every example is finished or
    after ``max_len`` tokens. Returns per example its beams, best first (width 1 is
    greedy decoding).
    """
    if width < 1:
        raise ValueError(f"width: expected a positive beam width, got {width}")
    h0, c0 = session.initial_state()
    batch, k = session.batch, width
    rows = np.repeat(np.arange(batch, dtype=np.int64), k)
    h, c = np.repeat(h0, k, axis=0), np.repeat(c0, k, axis=0)
    scores = np.full((batch, k), -np.inf)
    scores[:, 0] = 0.0
    finished = np.zeros((batch, k), dtype=bool)
    lengths = np.zeros((batch, k), dtype=np.int64)
    tokens = np.zeros((batch, k, 0), dtype=np.int64)
    beam_of = np.repeat(np.arange(batch * k, dtype=np.int64), k).reshape(batch, k * k)
    prev: np.ndarray | None = None
    for _ in range(max_len):
        flat_done = finished.ravel()
        live = np.flatnonzero(~flat_done & np.isfinite(scores.ravel()))
        top_logp, top_ids, h_live, c_live = _step_top_k(
            session, rows[live], None if prev is None else prev[live], h[live], c[live], k
        )
        # Each beam's candidates: a live beam's k best tokens, a finished beam itself
        # (the end token, its score frozen); -inf pads.
        cand = np.full((batch * k, k), -np.inf)
        token_of = np.full((batch * k, k), eos_id, dtype=np.int64)
        kk = top_ids.shape[1]
        cand[live, :kk] = scores.ravel()[live, None] + top_logp
        token_of[live, :kk] = top_ids
        done_rows = np.flatnonzero(flat_done)
        cand[done_rows, 0] = scores.ravel()[done_rows]
        new_len = lengths.ravel() + (~flat_done)
        norm = (cand / length_penalty(np.maximum(new_len, 1), alpha)[:, None]).reshape(batch, k * k)
        cand, token_of = cand.reshape(batch, k * k), token_of.reshape(batch, k * k)
        # The k best per example; ties broken by (beam, token), so the order is deterministic.
        best = np.lexsort((token_of, beam_of, -norm), axis=1)[:, :k]  # (B, k)
        parent = np.take_along_axis(beam_of, best, axis=1)
        token = np.take_along_axis(token_of, best, axis=1)
        scores = np.take_along_axis(cand, best, axis=1)
        finished = flat_done[parent] | (token == eos_id)
        lengths = new_len[parent]
        tokens = np.concatenate([tokens.reshape(batch * k, -1)[parent], token[..., None]], axis=2)
        h_new, c_new = h.copy(), c.copy()
        h_new[live], c_new[live] = h_live, c_live
        h, c = h_new[parent.ravel()], c_new[parent.ravel()]
        prev = token.ravel()
        if (finished | ~np.isfinite(scores)).all():
            break
    out = []
    for b in range(batch):
        hyps = [
            _hypothesis(tokens[b, j], scores[b, j], eos_id, alpha)
            for j in range(k)
            if np.isfinite(scores[b, j])
        ]
        out.append(sorted(hyps, key=lambda hy: -hy.score))
    return out


def score_targets(
    session: StepSession,
    rows: Sequence[int] | np.ndarray,
    targets: Sequence[Sequence[int]],
    eos_id: int,
    alpha: float = 0.6,
) -> list[Hypothesis]:
    """The model's scores of given outputs: ``targets[n]`` (extended ids, without the end
    token) as the output of example ``rows[n]``, teacher-forced, the end token included.
    Returns one finished :class:`Hypothesis` per target, in order (``score`` with the same
    GNMT length penalty ``alpha`` as the beams, so the two compare).

    Targets of one example that share a prefix share its decoder steps: each step runs
    once per distinct (example, prefix), so N candidates that differ from one text in one
    span (one-edit repairs) cost about the text once plus their suffixes after the span.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.shape != (len(targets),):
        raise ValueError(f"rows: expected ({len(targets)},) example indices, got shape {rows.shape}")
    if not len(targets):
        return []
    lens = np.array([len(t) + 1 for t in targets], dtype=np.int64)
    tokens = np.full((len(targets), int(lens.max())), eos_id, dtype=np.int64)
    for n, target in enumerate(targets):
        tokens[n, : len(target)] = np.asarray(target, dtype=np.int64)
    h0, c0 = session.initial_state()
    # Prefix classes: rows with the same example and prefix tokens[:, :t] share a state.
    examples, group = np.unique(rows, return_inverse=True)
    h, c = h0[examples], c0[examples]
    prev: np.ndarray | None = None
    log_prob = np.zeros(len(targets))
    live = np.arange(len(targets))
    for t in range(tokens.shape[1]):
        logp, h_new, c_new = session.step(examples, prev, h, c)
        log_prob[live] += logp[group, tokens[live, t]]
        keep = lens[live] > t + 1
        live, group = live[keep], group[keep]
        if not live.size:
            break
        key = group * logp.shape[1] + tokens[live, t]
        uniq, group = np.unique(key, return_inverse=True)
        parent = (uniq // logp.shape[1]).astype(np.int64)  # the prefix class each new one extends
        examples, prev = examples[parent], (uniq % logp.shape[1]).astype(np.int64)
        h, c = h_new[parent], c_new[parent]
    return [_hypothesis([*targets[n], eos_id], log_prob[n], eos_id, alpha) for n in range(len(targets))]


def _filtered_probs(logp: np.ndarray, temperature: float, top_k: int, top_p: float) -> np.ndarray:
    """Rows of sampling probabilities: logp / temperature, the top_k most likely ids (0: all),
    then the smallest set of them holding top_p of the mass."""
    z = logp / temperature
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    if 0 < top_k < p.shape[1]:
        kth = -np.partition(-p, top_k - 1, axis=1)[:, top_k - 1 : top_k]
        p = np.where(p >= kth, p, 0.0)
    p /= p.sum(axis=1, keepdims=True)
    if top_p < 1.0:
        order = np.argsort(-p, axis=1, kind="stable")
        sorted_p = np.take_along_axis(p, order, axis=1)
        before = np.cumsum(sorted_p, axis=1) - sorted_p  # mass of the more likely ids
        keep = np.zeros_like(p, dtype=bool)
        np.put_along_axis(keep, order, before < top_p, axis=1)
        p = np.where(keep, p, 0.0)
        p /= p.sum(axis=1, keepdims=True)
    return p


def sample(
    session: StepSession,
    n: int,
    max_len: int,
    eos_id: int,
    rng: np.random.Generator,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    alpha: float = 0.6,
    examples: Sequence[int] | None = None,
    max_rounds: int = 4,
) -> list[list[Hypothesis]]:
    """Up to ``n`` distinct sampled outputs per example, best model score first.

    Each round draws ``2 n`` samples per example still short of ``n`` distinct outputs
    (temperature, then top-k, then top-p filtering); at most ``max_rounds`` rounds.
    ``log_prob`` and ``score`` are the model's (untempered, unfiltered).
    ``examples``: the example indices to sample (default all); results are in that order.
    """
    if n < 1:
        raise ValueError(f"n: expected a positive number of samples, got {n}")
    if temperature <= 0:
        raise ValueError(f"temperature: expected > 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p: expected a share in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k: expected >= 0 (0: no limit), got {top_k}")
    chosen = list(range(session.batch)) if examples is None else [int(e) for e in examples]
    h0, c0 = session.initial_state()
    found: dict[int, dict[tuple[int, ...], Hypothesis]] = {e: {} for e in chosen}
    for _ in range(max_rounds):
        short = [e for e in chosen if len(found[e]) < n]
        if not short:
            break
        rows = np.repeat(np.asarray(short, dtype=np.int64), 2 * n)

        def draw(logp: np.ndarray) -> np.ndarray:
            p = _filtered_probs(logp, temperature, top_k, top_p)
            u = rng.random(len(p))[:, None]
            return np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), p.shape[1] - 1)

        tokens, log_prob = _decode_rows(session, rows, h0[rows], c0[rows], max_len, eos_id, draw)
        for i, e in enumerate(rows):
            hy = _hypothesis(tokens[i], log_prob[i], eos_id, alpha)
            if len(found[int(e)]) < n and hy.tokens not in found[int(e)]:
                found[int(e)][hy.tokens] = hy
    return [sorted(found[e].values(), key=lambda hy: -hy.score) for e in chosen]


def hybrid_pool(
    session: StepSession,
    width: int,
    n: int,
    max_len: int,
    eos_id: int,
    rng: np.random.Generator,
    threshold: float = -1.0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.95,
    alpha: float = 0.6,
    extra: Sequence[Sequence[Hypothesis]] | None = None,
) -> list[list[Hypothesis]]:
    """The candidates :func:`hybrid` ranks, unranked: per example its ``width`` beams,
    ``n`` samples when the best beam's mean token log-probability is below ``threshold``,
    and its ``extra`` hypotheses; distinct outputs (the best score of a repeated one)."""
    if extra is not None and len(extra) != session.batch:
        raise ValueError(f"extra: expected {session.batch} lists of hypotheses, got {len(extra)}")
    beams = beam_search(session, width, max_len, eos_id, alpha)
    unsure = [b for b, hyps in enumerate(beams) if not hyps or hyps[0].mean_log_prob < threshold]
    samples = (
        sample(session, n, max_len, eos_id, rng, temperature, top_k, top_p, alpha, unsure) if unsure else []
    )
    samples_of = dict(zip(unsure, samples, strict=True))
    out = []
    for b, hyps in enumerate(beams):
        pool: dict[tuple[int, ...], Hypothesis] = {}
        for hy in [*hyps, *samples_of.get(b, []), *(extra[b] if extra is not None else [])]:
            if hy.tokens not in pool or pool[hy.tokens].score < hy.score:
                pool[hy.tokens] = hy
        out.append(list(pool.values()))
    return out


def hybrid(
    session: StepSession,
    width: int,
    n: int,
    max_len: int,
    eos_id: int,
    rng: np.random.Generator,
    threshold: float = -1.0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.95,
    alpha: float = 0.6,
    is_valid: Callable[[Hypothesis], bool] | None = None,
    extra: Sequence[Sequence[Hypothesis]] | None = None,
) -> list[list[Hypothesis]]:
    """Beam search, then sampling for the examples whose best beam's mean token
    log-probability is below ``threshold``; each example's candidates (beams, samples and
    its ``extra`` hypotheses, e.g. :func:`score_targets` of candidates from elsewhere;
    distinct: :func:`hybrid_pool`) re-ranked by model score, those ``is_valid`` rejects
    (e.g. outputs that do not parse) last. Returns up to ``max(n, width)`` candidates per
    example."""
    pools = hybrid_pool(session, width, n, max_len, eos_id, rng, threshold, temperature, top_k, top_p, alpha,
                        extra)
    out = []
    for pool in pools:
        ranked = sorted(pool, key=lambda hy: (is_valid is not None and not is_valid(hy), -hy.score))
        out.append(ranked[: max(n, width)])
    return out


def expected_indent(prefix: str, lang: str, unit: str = "    ") -> str:
    """The indentation the line after ``prefix`` most likely has: Python after a line
    ending with ``:`` one ``unit`` deeper than it, C after a line ending with ``{`` one
    ``unit`` deeper, else the previous non-blank line's ("" for an empty prefix)."""
    lines = [ln for ln in prefix.splitlines() if ln.strip()]
    if not lines:
        return ""
    last = lines[-1].rstrip()
    indent = last[: len(last) - len(last.lstrip())]
    opener = ":" if lang == "python" else "{"
    return indent + unit if last.endswith(opener) else indent


def indent_unit(prefix: str) -> str:
    """The prefix's indentation step: the smallest positive growth of indentation from one
    non-blank line to the next (a tab when it indents with tabs), four spaces by default."""
    lines = [ln for ln in prefix.splitlines() if ln.strip()]
    if any(ln.startswith("\t") for ln in lines):
        return "\t"
    widths = [len(ln) - len(ln.lstrip()) for ln in lines]
    steps = [b - a for a, b in zip(widths, widths[1:]) if b > a]
    return " " * min(steps) if steps else "    "


def completion_candidates(prefix: str, lang: str, lines: Sequence[str] = ()) -> list[str]:
    """Candidate next lines of ``prefix`` for a completion pool, re-indented to the line's
    :func:`expected_indent`: every distinct line of the prefix (code repeats itself: a
    call in a parallel branch, ``self.x = x`` after a signature), then ``lines`` (such as
    the most frequent next lines of the training code: ``return None``, ``pass``). Lines
    are stripped before re-indenting; blank ones are skipped; distinct, in that order."""
    indent = expected_indent(prefix, lang, indent_unit(prefix))
    found = [ln.strip() for ln in prefix.splitlines()] + [ln.strip() for ln in lines]
    return [indent + ln for ln in dict.fromkeys(found) if ln]


MODES = ("greedy", "convergent", "divergent", "hybrid")


def decode(
    session: StepSession,
    mode: str,
    max_len: int,
    eos_id: int,
    n: int = 1,
    width: int = 5,
    alpha: float = 0.6,
    rng: np.random.Generator | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.95,
    threshold: float = -1.0,
    is_valid: Callable[[Hypothesis], bool] | None = None,
    extra: Sequence[Sequence[Hypothesis]] | None = None,
) -> list[list[Hypothesis]]:
    """Up to ``n`` outputs per example, best first, by ``mode``: ``"greedy"``,
    ``"convergent"`` (beam search of ``max(width, n)`` beams), ``"divergent"`` (``n``
    distinct samples) or ``"hybrid"`` (beam search, then sampling where the best beam's
    mean token log-probability is below ``threshold``, with ``extra`` candidates per
    example in the re-ranked pool; see :func:`hybrid`). ``rng`` (sampling) defaults to a
    generator seeded with 0."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if n < 1:
        raise ValueError(f"n: expected a positive number of outputs, got {n}")
    rng = np.random.default_rng(0) if rng is None else rng
    if mode == "greedy":
        return [[hy] for hy in greedy(session, max_len, eos_id, alpha)]
    if mode == "convergent":
        return [hyps[:n] for hyps in beam_search(session, max(width, n), max_len, eos_id, alpha)]
    if mode == "divergent":
        return sample(session, n, max_len, eos_id, rng, temperature, top_k, top_p, alpha)
    found = hybrid(
        session, width, n, max_len, eos_id, rng, threshold, temperature, top_k, top_p, alpha, is_valid, extra
    )
    return [hyps[:n] for hyps in found]
