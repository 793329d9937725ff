"""Incremental decoding of the code seq2seq model: the C++ step against the teacher-forced
loss and the PyTorch twin, greedy == beam width 1, batch independence, sampling options."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from seqlab.autograd import no_grad
from seqlab.models.code import (
    CodeSeq2Seq,
    DecoderSession,
    Seq2SeqConfig,
    beam_search,
    decode,
    greedy,
    hybrid,
    length_penalty,
    sample,
    score_targets,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from test_code_seq2seq import code_batch  # noqa: E402

V, OOV, EOS, UNK = 30, 4, 2, 1


def make_model(heads: int = 2, layers: int = 1) -> CodeSeq2Seq:
    model = CodeSeq2Seq(
        Seq2SeqConfig(
            vocab_size=V, embedding_dim=12, hidden_size=16, num_layers=layers, num_heads=heads, dropout=0.0
        )
    )
    model.eval()
    return model


def set_biases(model: CodeSeq2Seq, rng: np.random.Generator) -> None:
    """Every bias random (a trained model's; torch initialises the attention's to zero)."""
    for name, p in model.named_parameters():
        if "bias" in name:
            p.data[...] = rng.normal(0.0, 0.5, p.data.shape).astype(np.float32)


@pytest.mark.parametrize("biased", [False, True])
def test_steps_reproduce_the_teacher_forced_loss(rng, biased):
    model = make_model()
    if biased:
        set_biases(model, rng)
    src, src_len, src_ext, tgt, tgt_ext, tgt_len = code_batch(rng, 3, 8, 6, V, OOV)
    with no_grad():
        loss = float(model(src, src_len, src_ext, tgt, tgt_ext, tgt_len, V + OOV).data)
    session = DecoderSession(model, src, src_len, src_ext, V + OOV, UNK)
    h, c = session.initial_state()
    rows = np.arange(3)
    nll, count = 0.0, 0
    prev = None
    for t in range(tgt.shape[1]):
        logp, h, c = session.step(rows, prev, h, c)
        assert logp.shape == (3, V + OOV)
        np.testing.assert_allclose(np.exp(logp).sum(axis=1), 1.0, rtol=1e-5)
        live = t < tgt_len
        nll -= logp[live, tgt_ext[live, t]].sum()
        count += live.sum()
        prev = tgt_ext[:, t]  # OOV extended ids are read back as the unknown token
    np.testing.assert_allclose(nll / count, loss, rtol=1e-4)


@pytest.mark.parametrize("biased", [False, True])
def test_step_matches_torch_twin(torch, rng, biased):
    from torch_twins import torch_code_seq2seq

    model = make_model(heads=4, layers=2)
    if biased:
        set_biases(model, rng)
    src, src_len, src_ext, *_ = code_batch(rng, 2, 7, 3, V, OOV)
    session = DecoderSession(model, src, src_len, src_ext, V + OOV, UNK)
    h, c = session.initial_state()
    logp, h1, _ = session.step(np.array([1, 0, 1]), None, h[[1, 0, 1]], c[[1, 0, 1]])
    twin = torch_code_seq2seq(model).eval()
    with torch.no_grad():
        memory, kpm, th, tc = twin.encode(torch.tensor(src), torch.tensor(src_len))
        z, u, attn = twin.decoder.features(torch.zeros(2, 1, 12), memory, kpm, th, tc)
        p = twin.decoder.distribution(z, u, attn, torch.tensor(src_ext), V + OOV)[:, 0]
    expected = torch.log(p).numpy()[[1, 0, 1]]
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isfinite(logp), finite)
    np.testing.assert_allclose(logp[finite], expected[finite], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h1, z[:, 0, :16].numpy()[[1, 0, 1]], rtol=1e-5, atol=1e-6)


def test_greedy_equals_beam_width_one_and_beams_are_ranked(rng):
    model = make_model()
    src, src_len, src_ext, *_ = code_batch(rng, 4, 8, 3, V, OOV)
    session = DecoderSession(model, src, src_len, src_ext, V + OOV, UNK)
    g = greedy(session, 12, EOS)
    b1 = beam_search(session, 1, 12, EOS)
    assert [hy.tokens for hy in g] == [hyps[0].tokens for hyps in b1]
    np.testing.assert_allclose([hy.log_prob for hy in g], [hyps[0].log_prob for hyps in b1], rtol=1e-6)
    b5 = beam_search(session, 5, 12, EOS, alpha=0.6)
    for hyps, best in zip(b5, g, strict=True):
        assert len(hyps) == 5
        assert [hy.score for hy in hyps] == sorted((hy.score for hy in hyps), reverse=True)
        assert hyps[0].score >= best.score - 1e-9  # the beam finds at least greedy's score
        for hy in hyps:
            produced = len(hy.tokens) + int(hy.finished)
            np.testing.assert_allclose(hy.score, hy.log_prob / length_penalty(produced, 0.6))


def test_step_top_k_is_the_top_k_of_the_log_probs(rng):
    model = make_model()
    set_biases(model, rng)
    src, src_len, src_ext, *_ = code_batch(rng, 3, 8, 3, V, OOV)
    session = DecoderSession(model, src, src_len, src_ext, V + OOV, UNK)
    h, c = session.initial_state()
    rows, prev = np.array([2, 0, 1, 2]), np.array([5, V + 1, 3, 2])
    logp, h1, c1 = session.step(rows, prev, h[rows], c[rows])
    for k in (1, 5, V + OOV):
        values, ids, h2, c2 = session.step_top_k(rows, prev, h[rows], c[rows], k)
        assert values.shape == ids.shape == (4, k) and ids.dtype == np.int64
        for n in range(4):  # largest first, ties by the smaller id (-inf for the absent OOV slots)
            order = sorted(range(V + OOV), key=lambda j: (-logp[n, j], j))[:k]
            np.testing.assert_array_equal(ids[n], order)
            np.testing.assert_array_equal(values[n], logp[n, order])
        np.testing.assert_array_equal(h2, h1)
        np.testing.assert_array_equal(c2, c1)
    with pytest.raises(ValueError, match=r"k: expected a count in \[1, 34\]"):
        session._stepper.step_top_k(rows, np.zeros((4, 12), np.float32), h[rows], c[rows], 0)


def exhaustive_beam(session, k: int, max_len: int, eos_id: int, alpha: float = 0.6):
    """Beam search choosing among every (beam, token) candidate (the search without the
    per-beam top-k): the reference of the fused search."""
    h0, c0 = session.initial_state()
    batch = session.batch
    rows = np.repeat(np.arange(batch), k)
    h, c = np.repeat(h0, k, axis=0), np.repeat(c0, k, axis=0)
    scores = np.full((batch, k), -np.inf)
    scores[:, 0] = 0.0
    finished = np.zeros((batch, k), bool)
    lengths = np.zeros((batch, k), np.int64)
    tokens = np.zeros((batch, k, 0), np.int64)
    prev = None
    for _ in range(max_len):
        done = finished.ravel()
        live = np.flatnonzero(~done & np.isfinite(scores.ravel()))
        step_prev = None if prev is None else prev[live]
        logp, h_live, c_live = session.step(rows[live], step_prev, h[live], c[live])
        X = logp.shape[1]
        cand = np.full((batch * k, X), -np.inf)
        cand[live] = scores.ravel()[live, None] + logp
        cand[np.flatnonzero(done), eos_id] = scores.ravel()[done]
        new_len = lengths.ravel() + (~done)
        norm = (cand / length_penalty(np.maximum(new_len, 1), alpha)[:, None]).reshape(batch, k * X)
        best = np.array([sorted(range(k * X), key=lambda i: (-row[i], i))[:k] for row in norm])
        parent = best // X + (np.arange(batch) * k)[:, None]
        token = best % X
        scores = cand[parent, token]
        finished = done[parent] | (token == eos_id)
        lengths = new_len[parent]
        tokens = np.concatenate([tokens.reshape(batch * k, -1)[parent], token[..., None]], axis=2)
        h_new, c_new = h.copy(), c.copy()
        h_new[live], c_new[live] = h_live, c_live
        h, c = h_new[parent.ravel()], c_new[parent.ravel()]
        prev = token.ravel()
        if (finished | ~np.isfinite(scores)).all():
            break
    return tokens, scores


class FullStepSession:
    """A session without step_top_k: beam search takes the top-k of step's output."""

    def __init__(self, session: DecoderSession) -> None:
        self.session, self.batch = session, session.batch

    def initial_state(self):
        return self.session.initial_state()

    def step(self, *args):
        return self.session.step(*args)


def produced(seq: np.ndarray) -> tuple[int, ...]:
    """The tokens through the first end token."""
    toks = [int(t) for t in seq]
    return tuple(toks[: toks.index(EOS) + 1]) if EOS in toks else tuple(toks)


@pytest.mark.parametrize("width", [1, 3, 6])
def test_beam_search_equals_the_exhaustive_search(rng, width):
    model = make_model()
    set_biases(model, rng)
    src, src_len, src_ext, *_ = code_batch(rng, 3, 8, 3, V, OOV)
    session = DecoderSession(model, src, src_len, src_ext, V + OOV, UNK)
    tokens, scores = exhaustive_beam(session, width, 9, EOS)
    for s in (session, FullStepSession(session)):
        beams = beam_search(s, width, 9, EOS)
        for b in range(3):
            finite = [j for j in range(width) if np.isfinite(scores[b, j])]
            assert sorted(hy.tokens + ((EOS,) if hy.finished else ()) for hy in beams[b]) == sorted(
                produced(tokens[b, j]) for j in finite
            )
            assert sorted(hy.log_prob for hy in beams[b]) == sorted(scores[b, j] for j in finite)


def test_beam_results_do_not_depend_on_the_batch(rng):
    model = make_model()
    src, src_len, src_ext, *_ = code_batch(rng, 5, 8, 3, V, OOV)
    together = beam_search(DecoderSession(model, src, src_len, src_ext, V + OOV, UNK), 4, 10, EOS)
    for b in range(5):
        alone = beam_search(
            DecoderSession(model, src[b : b + 1], src_len[b : b + 1], src_ext[b : b + 1], V + OOV, UNK),
            4,
            10,
            EOS,
        )[0]
        assert [hy.tokens for hy in alone] == [hy.tokens for hy in together[b]]


def test_beam_score_is_the_sum_of_step_log_probs(rng):
    model = make_model()
    src, src_len, src_ext, *_ = code_batch(rng, 2, 6, 3, V, OOV)
    session = DecoderSession(model, src, src_len, src_ext, V + OOV, UNK)
    for b, hyps in enumerate(beam_search(session, 3, 8, EOS)):
        for hy in hyps:
            h, c = session.initial_state()
            h, c = h[[b]], c[[b]]
            total, prev = 0.0, None
            for tok in [*hy.tokens, *([EOS] if hy.finished else [])]:
                logp, h, c = session.step(np.array([b]), prev, h, c)
                total += logp[0, tok]
                prev = np.array([tok])
            np.testing.assert_allclose(hy.log_prob, total, rtol=1e-5, atol=1e-5)


def test_sampling_distinct_top_k_one_is_greedy_and_hybrid(rng):
    model = make_model()
    src, src_len, src_ext, *_ = code_batch(rng, 3, 8, 3, V, OOV)
    session = DecoderSession(model, src, src_len, src_ext, V + OOV, UNK)
    g = greedy(session, 10, EOS)
    one = sample(session, 1, 10, EOS, np.random.default_rng(0), top_k=1)
    assert [hyps[0].tokens for hyps in one] == [hy.tokens for hy in g]
    many = sample(session, 4, 10, EOS, np.random.default_rng(0), temperature=2.0, top_p=0.9)
    for hyps in many:
        assert 1 <= len(hyps) <= 4
        assert len({hy.tokens for hy in hyps}) == len(hyps)
        assert [hy.score for hy in hyps] == sorted((hy.score for hy in hyps), reverse=True)
    again = sample(session, 4, 10, EOS, np.random.default_rng(0), temperature=2.0, top_p=0.9)
    assert [[hy.tokens for hy in h] for h in again] == [[hy.tokens for hy in h] for h in many]
    sure = hybrid(session, 3, 3, 10, EOS, np.random.default_rng(0), threshold=-np.inf)
    beams = beam_search(session, 3, 10, EOS)
    assert [[hy.tokens for hy in h] for h in sure] == [[hy.tokens for hy in h] for h in beams]
    unsure = hybrid(
        session,
        2,
        4,
        10,
        EOS,
        np.random.default_rng(0),
        threshold=np.inf,
        is_valid=lambda hy: len(hy.tokens) % 2 == 0,
    )
    for hyps in unsure:
        valid = [len(hy.tokens) % 2 == 0 for hy in hyps]
        assert valid == sorted(valid, reverse=True)  # rejected outputs ranked last
    with pytest.raises(ValueError, match="top_p"):
        sample(session, 2, 5, EOS, rng, top_p=0.0)
    with pytest.raises(ValueError, match="width"):
        beam_search(session, 0, 5, EOS)


class CountingSession:
    """A session that counts the rows it steps."""

    def __init__(self, session: DecoderSession) -> None:
        self.inner, self.batch, self.rows_stepped = session, session.batch, 0

    def initial_state(self):
        return self.inner.initial_state()

    def step(self, rows, prev, h, c):
        self.rows_stepped += len(rows)
        return self.inner.step(rows, prev, h, c)


def test_score_targets_is_the_teacher_forced_log_prob_and_shares_prefixes(rng):
    model = make_model()
    src, src_len, src_ext, *_ = code_batch(rng, 2, 8, 3, V, OOV)
    session = DecoderSession(model, src, src_len, src_ext, V + OOV, UNK)
    base = [9, 14, 4, 21, 30, 11, 8, 25, 16]  # 30 is an extended id (a copied source token)
    # one-edit variants of base for example 0, base and a shorter text for example 1
    targets = [base, [*base[:3], 5, *base[4:]], [*base[:6], 7, *base[6:]], base, base[:4], base[:4]]
    rows = np.array([0, 0, 0, 1, 1, 1])
    counting = CountingSession(session)
    scored = score_targets(counting, rows, targets, EOS, alpha=0.6)
    for row, tokens, hy in zip(rows, targets, scored, strict=True):
        h, c = session.initial_state()
        h, c = h[[row]], c[[row]]
        total, prev = 0.0, None
        for tok in [*tokens, EOS]:
            logp, h, c = session.step(np.array([row]), prev, h, c)
            total += logp[0, tok]
            prev = np.array([tok])
        assert hy.tokens == tuple(tokens) and hy.finished
        np.testing.assert_allclose(hy.log_prob, total, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(hy.score, total / length_penalty(len(tokens) + 1, 0.6), rtol=1e-5)
    # distinct (example, prefix) steps only: example 0 runs base (10 steps with the end
    # token) plus the steps after each edit (6 after the swap at 3, 4 after the insertion at
    # 6); example 1 runs base's steps only (its short targets are a prefix of it, the
    # duplicate shares every step)
    assert counting.rows_stepped == 10 + 6 + 4 + 10
    # a beam's own output scores as the beam scored it
    beams = beam_search(session, 3, 10, EOS)
    for b, hyps in enumerate(beams):
        finished = [hy for hy in hyps if hy.finished]
        again = score_targets(session, [b] * len(finished), [list(hy.tokens) for hy in finished], EOS)
        np.testing.assert_allclose([hy.log_prob for hy in again], [hy.log_prob for hy in finished], rtol=1e-5)
    with pytest.raises(ValueError, match="rows"):
        score_targets(session, [0], [base, base], EOS)


def test_hybrid_ranks_extra_candidates_by_score_and_validity(rng):
    model = make_model()
    src, src_len, src_ext, *_ = code_batch(rng, 2, 8, 3, V, OOV)
    session = DecoderSession(model, src, src_len, src_ext, V + OOV, UNK)
    beams = beam_search(session, 2, 10, EOS)
    # the best beam of example 0 given again, and an unlikely candidate for example 1
    extra = [
        score_targets(session, [0], [list(beams[0][0].tokens)], EOS),
        score_targets(session, [1], [[5, 6, 7, 8]], EOS),
    ]
    out = hybrid(session, 2, 1, 10, EOS, np.random.default_rng(0), threshold=-np.inf, extra=extra)
    assert out[0][0].tokens == beams[0][0].tokens  # a duplicate joins once
    assert len(out[0]) == 2
    assert (5, 6, 7, 8) not in [hy.tokens for hy in out[1]]  # beyond the kept max(n, width)
    valid_only = hybrid(session, 2, 3, 10, EOS, np.random.default_rng(0), threshold=-np.inf, extra=extra,
                        is_valid=lambda hy: hy.tokens == (5, 6, 7, 8))
    assert valid_only[1][0].tokens == (5, 6, 7, 8)  # valid first, whatever its score
    with pytest.raises(ValueError, match="extra"):
        hybrid(session, 2, 1, 10, EOS, np.random.default_rng(0), extra=extra[:1])


def test_stepper_checks_rows_and_shapes(rng):
    model = make_model()
    src, src_len, src_ext, *_ = code_batch(rng, 2, 6, 3, V, OOV)
    session = DecoderSession(model, src, src_len, src_ext, V + OOV, UNK)
    h, c = session.initial_state()
    with pytest.raises(ValueError, match=r"rows: every row must name an example in \[0, 2\), got 2"):
        session.step(np.array([0, 2]), None, h, c)
    with pytest.raises(ValueError, match="h"):
        session.step(np.array([0]), None, h, c[:1])
    bad = src_ext.copy()
    bad[0, 0] = V + OOV
    with pytest.raises(ValueError, match="source_ids: every id must be in"):
        DecoderSession(model, src, src_len, bad, V + OOV, UNK)


def test_torch_incremental_session_matches(torch, rng):
    """The benchmark's PyTorch incremental decoder gives seqlab's beams."""
    from torch_twins import TorchDecoderSession, torch_code_seq2seq

    model = make_model(heads=2)
    src, src_len, src_ext, *_ = code_batch(rng, 3, 8, 3, V, OOV)
    ours = beam_search(DecoderSession(model, src, src_len, src_ext, V + OOV, UNK), 3, 8, EOS)
    theirs = beam_search(
        TorchDecoderSession(torch_code_seq2seq(model), src, src_len, src_ext, V + OOV, UNK), 3, 8, EOS
    )
    assert [[hy.tokens for hy in h] for h in ours] == [[hy.tokens for hy in h] for h in theirs]
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose([hy.log_prob for hy in a], [hy.log_prob for hy in b], rtol=1e-4, atol=1e-5)


def test_decode_modes(rng):
    model = make_model()
    src, src_len, src_ext, *_ = code_batch(rng, 2, 8, 3, V, OOV)
    session = DecoderSession(model, src, src_len, src_ext, V + OOV, UNK)
    g = decode(session, "greedy", 10, EOS)
    assert [h[0].tokens for h in g] == [hy.tokens for hy in greedy(session, 10, EOS)]
    conv = decode(session, "convergent", 10, EOS, n=2, width=4)
    assert [[hy.tokens for hy in h] for h in conv] == [
        [hy.tokens for hy in h[:2]] for h in beam_search(session, 4, 10, EOS)
    ]
    div = decode(session, "divergent", 10, EOS, n=3, rng=np.random.default_rng(1))
    assert all(1 <= len(h) <= 3 for h in div)
    assert all(len(h) <= 2 for h in decode(session, "hybrid", 10, EOS, n=2, threshold=np.inf))
    with pytest.raises(ValueError, match="mode: expected one of"):
        decode(session, "creative", 10, EOS)


def test_learns_to_copy_unseen_out_of_vocabulary_tokens():
    """Trained on copying (a fifth of the tokens outside the vocabulary, so only the copy
    mechanism can produce them), greedy decoding copies held-out sources exactly."""
    import seqlab

    vocab, oov, length = 20, 4, 5

    def copy_batch(rng: np.random.Generator, n: int):
        src_ext = rng.integers(3, vocab + oov, size=(n, length))
        tgt_ext = np.concatenate([src_ext, np.full((n, 1), EOS)], axis=1)
        return (
            np.where(src_ext >= vocab, UNK, src_ext),
            np.full(n, length),
            src_ext,
            np.where(tgt_ext >= vocab, UNK, tgt_ext),
            tgt_ext,
            np.full(n, length + 1),
        )

    seqlab.manual_seed(0)
    model = CodeSeq2Seq(
        Seq2SeqConfig(vocab_size=vocab, embedding_dim=16, hidden_size=32, num_heads=2, dropout=0.0)
    )
    opt = seqlab.optim.AdamW(list(model.parameters()), lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(60):
        opt.zero_grad()
        loss = model(*copy_batch(rng, 32), vocab + oov)
        loss.backward()
        opt.step()
    assert float(loss.data) < 0.05
    model.eval()
    test = copy_batch(np.random.default_rng(99), 100)
    hyps = greedy(DecoderSession(model, test[0], test[1], test[2], vocab + oov, UNK), length + 3, EOS)
    with_oov = [i for i in range(100) if (test[2][i] >= vocab).any()]
    assert len(with_oov) > 50
    assert np.mean([hyps[i].tokens == tuple(test[2][i]) for i in with_oov]) >= 0.95



def bf16_model(rng: np.random.Generator, vocab: int, hidden: int, scale: float, batch: int = 3):
    """A biased model whose vocabulary is large enough for bf16 rounding to reorder near
    ties (its output weight scaled by ``scale``), and the arguments of a session."""
    model = CodeSeq2Seq(
        Seq2SeqConfig(
            vocab_size=vocab, embedding_dim=12, hidden_size=hidden, num_layers=1, num_heads=2, dropout=0.0
        )
    )
    model.eval()
    set_biases(model, rng)
    model.decoder.out.weight.data[...] *= scale
    src, src_len, src_ext, *_ = code_batch(rng, batch, 9, 3, vocab, OOV)
    return model, (src, src_len, src_ext, vocab + OOV, UNK)


def bf16_pair(rng: np.random.Generator, vocab: int, hidden: int, scale: float):
    """An fp32 and a bf16 session over the same model and sources."""
    model, args = bf16_model(rng, vocab, hidden, scale)
    return DecoderSession(model, *args), DecoderSession(model, *args, precision="bf16")


@pytest.mark.parametrize(("hidden", "scale"), [(16, 1.0), (20, 8.0)])  # Z = 32, and 40: a padded bf16 row
def test_bf16_step_chooses_the_fp32_tokens(rng, hidden, scale):
    vocab = 3000
    fp32, bf16 = bf16_pair(rng, vocab, hidden, scale)
    h, c = fp32.initial_state()
    rows = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2, 1])  # 11 rows: two groups of the bf16 kernel
    prev = np.array([5, vocab + 1, 3, 2, 7, 9, 11, vocab, 4, 100, 2999])
    logp, h1, c1 = fp32.step(rows, prev, h[rows], c[rows])
    logp16, h2, c2 = bf16.step(rows, prev, h[rows], c[rows])
    np.testing.assert_array_equal(h1, h2)
    np.testing.assert_array_equal(logp.argmax(axis=1), logp16.argmax(axis=1))
    finite = np.isfinite(logp)
    difference = np.abs(logp16[finite] - logp[finite])
    assert 0 < difference.max() < 0.05  # the bf16 weight is used, its error is small
    for k in (1, 5, 40):
        values, ids, *_ = fp32.step_top_k(rows, prev, h[rows], c[rows], k)
        values16, ids16, *_ = bf16.step_top_k(rows, prev, h[rows], c[rows], k)
        # The k best ids are fp32's up to near ties (a copied id and a vocabulary id can
        # swap within the log-sum-exp's error: the other ids' bf16 terms, here flat rows
        # of large logits: ~1e-4): the fp32 log-probabilities of the ids chosen are the
        # fp32 top k's, in order.
        assert (ids16 == ids).mean() > 0.95
        np.testing.assert_allclose(np.take_along_axis(logp, ids16, axis=1), values, rtol=0, atol=1e-3)
        np.testing.assert_allclose(values16, values, rtol=5e-4)


def test_bf16_beams_are_the_fp32_beams(rng):
    fp32, bf16 = bf16_pair(rng, 3000, 16, 4.0)
    ours, exact = beam_search(bf16, 5, 12, EOS), beam_search(fp32, 5, 12, EOS)  # 15 rows a step
    assert [[hy.tokens for hy in h] for h in ours] == [[hy.tokens for hy in h] for h in exact]
    for a, b in zip(ours, exact, strict=True):
        np.testing.assert_allclose([hy.log_prob for hy in a], [hy.log_prob for hy in b], rtol=1e-5, atol=1e-4)
    g = greedy(bf16, 12, EOS)
    assert [hy.tokens for hy in g] == [hyps[0].tokens for hyps in beam_search(bf16, 1, 12, EOS)]
    assert [hy.tokens for hy in g] == [hy.tokens for hy in greedy(fp32, 12, EOS)]


def test_bf16_flat_rows_fall_back_to_fp32(rng):
    """Output rows that differ by less than the bf16 rounding bound: thousands of ids tie
    within it, more than are re-scored, so the rows are computed in fp32, bit for bit."""
    vocab = 3000
    model, args = bf16_model(rng, vocab, 16, 1.0)
    w = model.decoder.out.weight.data
    w[...] = w[:1] * (1.0 + 1e-4 * rng.standard_normal((vocab, 1))).astype(np.float32)
    model.decoder.out.bias.data[...] = 0.0
    model.decoder.gen.bias.data[...] = 30.0  # p_gen = 1: no copy mass lifts the source's ids
    fp32, bf16 = DecoderSession(model, *args), DecoderSession(model, *args, precision="bf16")
    h, c = fp32.initial_state()
    values, ids, *_ = fp32.step_top_k(np.arange(3), None, h, c, 5)
    values16, ids16, *_ = bf16.step_top_k(np.arange(3), None, h, c, 5)
    np.testing.assert_array_equal(ids16, ids)
    np.testing.assert_array_equal(values16, values)


def test_bf16_precision_is_checked(rng):
    model = make_model()
    src, src_len, src_ext, *_ = code_batch(rng, 2, 6, 3, V, OOV)
    with pytest.raises(ValueError, match="precision: expected 'fp32' or 'bf16', got 'fp16'"):
        DecoderSession(model, src, src_len, src_ext, V + OOV, UNK, precision="fp16")


def test_masked_session_never_emits_the_banned_ids(rng):
    from seqlab.models.code.search import MaskedSession

    model = make_model()
    # the unknown token made the likeliest output at every step
    model.decoder.out.bias.data[UNK] = 50.0
    model.decoder.gen.bias.data[:] = 5.0  # p_gen ~ 0.99: the vocabulary distribution decides
    src, src_len, src_ext, *_ = code_batch(rng, 3, 8, 3, V, OOV)
    session = DecoderSession(model, src, src_len, src_ext, V + OOV, UNK)
    assert all(UNK in hy.tokens for hy in greedy(session, 6, EOS))
    banned = [0, UNK, 4]
    masked = MaskedSession(session, banned)
    h, c = session.initial_state()
    rows = np.arange(3)
    logp, *_ = masked.step(rows, None, h, c)
    raw, *_ = session.step(rows, None, h, c)
    assert np.isneginf(logp[:, banned]).all()
    keep = np.setdiff1d(np.arange(raw.shape[1]), banned)
    np.testing.assert_array_equal(logp[:, keep], raw[:, keep])
    values, ids, *_ = masked.step_top_k(rows, None, h, c, 4)
    order = np.argsort(-logp, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_allclose(values, np.take_along_axis(logp, order, axis=1), rtol=1e-6)
    for mode in ("greedy", "convergent", "divergent", "hybrid"):
        found = decode(masked, mode, 8, EOS, n=3, width=3, rng=np.random.default_rng(0))
        tokens = {t for hyps in found for hy in hyps for t in hy.tokens}
        assert tokens and not tokens & set(banned), mode
    # copies of out-of-vocabulary source tokens (extended ids >= V) stay allowed
    assert np.isfinite(logp[:, V:]).any()


def test_encoded_pairs_train_what_the_incremental_decoder_reads():
    """The recipe's path end to end: pairs encoded as the Trainer batches them give the
    teacher-forced loss that the incremental session's scores of the same targets give.
    (A decoder input shifted by one, such as ``<s>`` in front of the inputs, trains a model
    on the token before the previous one: its loss is then not what decoding scores.)"""
    from seqlab.data.code import CodePair
    from seqlab.data.code.encoding import UNK_ID, build_code_vocabulary, encode_pairs

    pairs = [
        CodePair("bug_fix", "python", "def f(a, b):\n    return a + b\n", "def f(a, b):\n    return a - b\n",
                 "t.py"),
        CodePair("completion", "python", "def g(x):\n    y = x * 2\n", "    return y + rare", "t.py", 3),
    ]
    vocab = build_code_vocabulary(pairs[:1], min_count=1)
    enc = encode_pairs(pairs, vocab, max_source=32, max_target=32)
    model = CodeSeq2Seq(Seq2SeqConfig(vocab_size=len(vocab), embedding_dim=12, hidden_size=16, dropout=0.0))
    model.eval()
    set_biases(model, np.random.default_rng(3))
    extended = len(vocab) + enc.max_oov
    with no_grad():
        loss = float(model(enc.src_ids, enc.src_len, enc.src_ext, enc.tgt_in, enc.tgt_out, enc.tgt_len,
                           extended).data)
    session = DecoderSession(model, enc.src_ids, enc.src_len, enc.src_ext, extended, UNK_ID)
    targets = [list(enc.tgt_out[b, : enc.tgt_len[b] - 1]) for b in range(len(pairs))]
    scored = score_targets(session, np.arange(len(pairs)), targets, 3)
    nll = -sum(hy.log_prob for hy in scored) / int(enc.tgt_len.sum())
    np.testing.assert_allclose(nll, loss, rtol=1e-4)
