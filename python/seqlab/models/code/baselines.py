"""Baselines of the code optimizer, each fitted on the training split only:

- ``bug_fix``: the source returned unchanged (:func:`unchanged`), and :class:`NGramReranker`:
  a token n-gram model of correct code scores every candidate one edit of the injected bug
  classes away from the source (:func:`seqlab.data.code.bugs.enumerate_edits`, the set is
  closed under undoing an edit) and the unchanged source, and returns the best;
- ``completion``: :class:`NGramCompleter`, greedy continuation of the prefix up to the end
  of the line by the n-gram model mixed with a cache model of the prefix;
- ``generation``: :class:`NearestBody`, the target of the training pair whose source has
  the largest token-set overlap (Jaccard) with the query.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from ...data.code.bugs import enumerate_edits
from ...data.code.lexers import CodeSyntaxError
from ...data.code.pairs import CodePair
from ...data.code.syntax import parses
from ...data.code.tokens import ends_line, tokenize_code

BOS, EOS = "<s>", "</s>"


class NGramModel:
    """A token n-gram language model with interpolated absolute discounting (discount
    ``discount``, backing off to a uniform distribution over the seen tokens plus one).

    Sequences are scored with ``order - 1`` start symbols before them and an end symbol
    after them.
    """

    def __init__(self, order: int = 4, discount: float = 0.75) -> None:
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if not 0.0 < discount < 1.0:
            raise ValueError(f"discount must be in (0, 1), got {discount}")
        self.order = order
        self.discount = discount
        self.counts: list[dict[tuple[str, ...], Counter[str]]] = [defaultdict(Counter) for _ in range(order)]
        self.totals: list[dict[tuple[str, ...], int]] = [{} for _ in range(order)]
        self.vocab: set[str] = set()

    def fit(self, sequences: Iterable[Sequence[str]]) -> NGramModel:
        """Counts the n-grams of every sequence; returns self."""
        for seq in sequences:
            padded = [BOS] * (self.order - 1) + list(seq) + [EOS]
            self.vocab.update(seq)
            for i in range(self.order - 1, len(padded)):
                w = padded[i]
                for n in range(self.order):
                    self.counts[n][tuple(padded[i - n : i])][w] += 1
        for n in range(self.order):
            self.totals[n] = {ctx: sum(c.values()) for ctx, c in self.counts[n].items()}
        self.vocab.add(EOS)
        return self

    def prob(self, context: Sequence[str], word: str) -> float:
        """P(word | the last ``order - 1`` tokens of context)."""
        p = 1.0 / (len(self.vocab) + 1)
        ctx = tuple(context[len(context) - self.order + 1 :]) if self.order > 1 else ()
        for n in range(0, self.order):
            c = ctx[len(ctx) - n :] if n else ()
            if len(c) < n:
                break
            total = self.totals[n].get(c)
            if not total:
                break
            followers = self.counts[n][c]
            d = self.discount
            p = max(followers.get(word, 0) - d, 0.0) / total + d * len(followers) / total * p
        return p

    def logprob(self, context: Sequence[str], word: str) -> float:
        return math.log(self.prob(context, word))

    def score(self, tokens: Sequence[str]) -> float:
        """Log-probability of a whole sequence (with its end symbol)."""
        padded = [BOS] * (self.order - 1) + list(tokens) + [EOS]
        return sum(
            self.logprob(padded[i - self.order + 1 : i], padded[i])
            for i in range(self.order - 1, len(padded))
        )

    def window_score(self, padded: Sequence[str], start: int, end: int) -> float:
        """Log-probability of the tokens ``padded[start:end]`` given what precedes them
        (``padded`` already holds the start symbols and the end symbol)."""
        lo = self.order - 1
        return sum(self.logprob(padded[max(0, i - lo) : i], padded[i]) for i in range(max(start, lo), end))


def unchanged(source: str) -> str:
    """The ``bug_fix`` baseline that changes nothing."""
    return source


class NGramReranker:
    """Scores every one-edit candidate of the bug classes with an n-gram model of correct
    code, and the source itself; returns the best candidate that parses.

    Candidates differ from the source in one span, so a candidate's score is computed on
    the ``order - 1`` tokens around the edit only.
    """

    def __init__(self, order: int = 4, margin: float = 0.0, max_parse_checks: int = 5) -> None:
        self.order = order
        self.models: dict[str, NGramModel] = {}
        self.margin = margin
        self.max_parse_checks = max_parse_checks

    def fit(self, pairs: Iterable[CodePair]) -> NGramReranker:
        """Fits one n-gram model per language on the correct code of training pairs (the
        targets of ``bug_fix`` pairs, source plus target of the others)."""
        seqs: dict[str, list[list[str]]] = defaultdict(list)
        for p in pairs:
            seqs[p.lang].append(p.target_tokens if p.task == "bug_fix" else p.source_tokens + p.target_tokens)
        self.models = {lang: NGramModel(self.order).fit(s) for lang, s in seqs.items()}
        return self

    def candidates(self, source: str, lang: str) -> list[tuple[float, str]]:
        """``(score gain over the source, candidate)``, best first; the source itself has
        gain 0."""
        model = self.models.get(lang)
        try:
            tokens = tokenize_code(source, lang)
        except CodeSyntaxError:
            return [(0.0, source)]
        if model is None:
            return [(0.0, source)]  # no training code of this language
        n = self.order
        padded = [BOS] * (n - 1) + tokens + [EOS]
        off = n - 1
        base_cache: dict[tuple[int, int], float] = {}
        out = [(0.0, source)]
        for e in enumerate_edits(tokens, lang, source):
            lo, hi_old = e.start + off, e.end + off + n - 1
            key = (lo, e.end)
            if key not in base_cache:
                base_cache[key] = model.window_score(padded, lo, min(hi_old, len(padded)))
            cand = [*padded[:lo], *e.replacement, *padded[e.end + off :]]
            hi_new = min(lo + len(e.replacement) + n - 1, len(cand))
            gain = model.window_score(cand, lo, hi_new) - base_cache[key]
            out.append((gain, "".join(cand[off:-1])))
        out.sort(key=lambda x: -x[0])
        return out

    def gains(self, source: str, lang: str, outputs: Sequence[str]) -> list[float]:
        """The n-gram log-probability of each output minus the source's (0 for the source
        itself and for every output when the language has no model): windowed for the
        one-edit candidates, over the whole sequence for other outputs (beams, samples);
        an output that does not tokenise gets -inf."""
        model = self.models.get(lang)
        if model is None:
            return [0.0] * len(outputs)
        known = {cand: gain for gain, cand in reversed(self.candidates(source, lang))}
        base: float | None = None
        out = []
        for text in outputs:
            if text in known:
                out.append(known[text])
                continue
            try:
                tokens = tokenize_code(text, lang)
            except CodeSyntaxError:
                out.append(-math.inf)
                continue
            if base is None:
                base = model.score(tokenize_code(source, lang))
            out.append(model.score(tokens) - base)
        return out

    def fix(self, source: str, lang: str) -> str:
        """The best candidate (gain above ``margin``) that parses, else the source."""
        checked = 0
        for gain, cand in self.candidates(source, lang):
            if gain <= self.margin or cand == source:
                return source
            if parses(cand, lang):
                return cand
            checked += 1
            if checked >= self.max_parse_checks:
                break
        return source


class NGramCompleter:
    """Completes a line: greedy argmax continuation, until a newline or ``max_tokens``, by
    an n-gram model of the language fitted on the training completion pairs, mixed with a
    cache model of the prefix itself (weight ``cache_weight``; code repeats itself locally,
    Tu et al. 2014). The first token predicted is the newline with the new line's
    indentation."""

    def __init__(self, order: int = 4, max_tokens: int = 40, cache_weight: float = 0.5) -> None:
        self.order = order
        self.models: dict[str, NGramModel] = {}
        self.max_tokens = max_tokens
        self.cache_weight = cache_weight
        #: per language, how often each line (stripped) is the next line of a training pair
        self.line_counts: dict[str, Counter[str]] = defaultdict(Counter)

    def frequent_lines(self, lang: str, k: int) -> list[str]:
        """The ``k`` most frequent next lines (stripped) of the training pairs of ``lang``,
        most frequent first (ties: first seen)."""
        return [line for line, _ in self.line_counts.get(lang, Counter()).most_common(k)]

    def fit(self, pairs: Iterable[CodePair]) -> NGramCompleter:
        """One n-gram model per language over the training completion pairs, each
        tokenised as the code it completes (source and target joined, so a new line's
        indentation is one token with its newline, as everywhere else)."""
        seqs: dict[str, list[list[str]]] = defaultdict(list)
        self.line_counts = defaultdict(Counter)
        for p in pairs:
            if p.task == "completion":
                self.line_counts[p.lang][p.target.strip()] += 1
                try:
                    seqs[p.lang].append(tokenize_code(p.source + p.target, p.lang))
                except CodeSyntaxError:
                    continue
        self.models = {lang: NGramModel(self.order).fit(s) for lang, s in seqs.items()}
        return self

    def line_logprob(self, prefix: str, line: str, lang: str) -> float:
        """Log-probability of ``line`` as the next line of ``prefix`` (which ends with a
        newline) under the model mixed with the prefix's cache model, the line's end
        included (the mass of every line-ending token and the end symbol); -inf when the
        two do not tokenise into the prefix's tokens then the line's, 0 without a model of
        ``lang``."""
        m = self.models.get(lang)
        if m is None:
            return 0.0
        new_line = prefix.endswith("\n")
        try:
            head = tokenize_code(prefix[:-1] if new_line else prefix, lang)
            whole = tokenize_code(prefix[:-1] + ("\n" if new_line else "") + line, lang)
        except CodeSyntaxError:
            return -math.inf
        if whole[: len(head)] != head:
            return -math.inf
        cache = NGramModel(self.order).fit([head])
        lam = self.cache_weight
        context = [BOS] * (self.order - 1) + head

        def prob(w: str) -> float:
            return (1 - lam) * m.prob(context, w) + lam * cache.prob(context, w)

        total = 0.0
        for tok in whole[len(head):]:
            total += math.log(prob(tok))
            context.append(tok)
        ends = {w for w in m.vocab | cache.vocab if ends_line(w)} | {EOS}
        return total + math.log(sum(prob(w) for w in ends))

    @staticmethod
    def _followers(m: NGramModel, context: list[str], k: int = 50) -> list[str]:
        for n in range(m.order - 1, -1, -1):
            c = tuple(context[len(context) - n :]) if n else ()
            if len(c) == n and c in m.counts[n]:
                return [w for w, _ in m.counts[n][c].most_common(k)]
        return []

    def complete(self, prefix: str, lang: str) -> str:
        """The predicted next line of ``prefix`` (which ends with a newline)."""
        m = self.models.get(lang)
        new_line = prefix.endswith("\n")
        try:
            tokens = tokenize_code(prefix[:-1] if new_line else prefix, lang)
        except CodeSyntaxError:
            return ""
        if m is None:
            return ""
        context = [BOS] * (self.order - 1) + tokens
        cache = NGramModel(self.order).fit([tokens])
        lam = self.cache_weight

        def prob(w: str) -> float:
            return (1 - lam) * m.prob(context, w) + lam * cache.prob(context, w)

        out: list[str] = []
        for step in range(self.max_tokens):
            seen = self._followers(cache, context) + self._followers(m, context)
            options = list(dict.fromkeys(seen)) or [EOS]
            if step == 0 and new_line:
                options = [w for w in options if ends_line(w)] or ["\n"]
            best = max(options, key=prob)
            if best == EOS:
                break
            if ends_line(best):
                if not (step == 0 and new_line):
                    break
                out.append(best.rsplit("\n", 1)[1])  # the indentation of the new line
            else:
                out.append(best)
            context.append(best)
        return "".join(out)


class NearestBody:
    """Generation by retrieval: the target of the training ``generation`` pair of the same
    language whose source's token set overlaps most (Jaccard) with the query's."""

    def __init__(self) -> None:
        self.index: dict[str, np.ndarray] = {}
        self.sizes = np.zeros(0, np.int64)
        self.targets: list[str] = []
        self.langs = np.zeros(0, dtype=object)

    def fit(self, pairs: Iterable[CodePair]) -> NearestBody:
        postings: dict[str, list[int]] = defaultdict(list)
        sizes, langs = [], []
        for p in pairs:
            if p.task != "generation":
                continue
            toks = set(p.source_tokens)
            for t in toks:
                postings[t].append(len(self.targets))
            sizes.append(len(toks))
            langs.append(p.lang)
            self.targets.append(p.target)
        if not self.targets:
            raise ValueError("NearestBody.fit: no generation pairs to retrieve from")
        self.index = {t: np.array(ix, np.int64) for t, ix in postings.items()}
        self.sizes = np.array(sizes, np.int64)
        self.langs = np.array(langs, dtype=object)
        return self

    def generate(self, source: str, lang: str) -> str:
        try:
            toks = set(tokenize_code(source, lang))
        except CodeSyntaxError:
            toks = set(source.split())
        hits = [self.index[t] for t in toks if t in self.index]
        if not hits:
            return self.targets[0]
        inter = np.bincount(np.concatenate(hits), minlength=len(self.targets))
        jaccard = np.where(self.langs == lang, inter / (len(toks) + self.sizes - inter), -1.0)
        return self.targets[int(np.argmax(jaccard))]
