"""RecurrentDecoder against a PyTorch loop over timesteps (LSTMCell/GRUCell/RNNCell +
MultiheadAttention) with the same weights and teacher-forcing mask: outputs and every
gradient; finite differences; bad input; sampled masks."""

from __future__ import annotations

import numpy as np
import pytest

import seqlab
from seqlab.nn import RecurrentDecoder

B, T, E, H, A, S, HEADS = 3, 5, 6, 8, 5, 4, 2


def torch_reference(torch, dec: RecurrentDecoder, targets, mask, h0, c0, memory, lengths):
    """The decoder written as a Python loop over timesteps with torch modules."""
    cells = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}
    state = {k: torch.from_numpy(v) for k, v in dec.state_dict().items()}
    cell = cells[dec.cell](dec.input_size, dec.hidden_size)
    cell.load_state_dict({k: state[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    out = torch.nn.Linear(dec.out.in_features, dec.output_size)
    out.load_state_dict({"weight": state["out.weight"], "bias": state["out.bias"]})
    start = torch.nn.Parameter(state["start"].clone())
    mha = None
    if dec.attention is not None:
        a = dec.attention
        mha = torch.nn.MultiheadAttention(a.embed_dim, a.num_heads, kdim=a.kdim, vdim=a.vdim,
                                          batch_first=True)
        mha.load_state_dict({k[len("attention."):]: v for k, v in state.items()
                             if k.startswith("attention.")})
    batch, steps = targets.shape[:2]
    y = torch.from_numpy(targets)
    tf = torch.from_numpy(mask)
    h = torch.from_numpy(h0).requires_grad_()
    c = None if c0 is None else torch.from_numpy(c0).requires_grad_()
    mem = None if memory is None else torch.from_numpy(memory).requires_grad_()
    kpm = None
    if lengths is not None:
        kpm = torch.arange(memory.shape[1])[None, :] >= torch.from_numpy(lengths)[:, None]
    hs, cs = h, c
    preds = []
    prev = None
    for t in range(steps):
        if t == 0:
            u = start.expand(batch, -1)
        elif bool(tf[:, t].all()):
            u = y[:, t - 1]
        else:
            u = torch.where(tf[:, t : t + 1], y[:, t - 1], prev)
        if dec.cell == "lstm":
            hs, cs = cell(u, (hs, cs))
        else:
            hs = cell(u, hs)
        z = hs
        if mha is not None:
            ctx, _ = mha(hs.unsqueeze(1), mem, mem, key_padding_mask=kpm, need_weights=False)
            z = torch.cat([hs, ctx.squeeze(1)], dim=1)
        prev = out(z)
        preds.append(prev)
    pred = torch.stack(preds, dim=1)
    modules = {"": cell, "out.": out}
    if mha is not None:
        modules["attention."] = mha
    params = {f"{p}{n}": v for p, m in modules.items() for n, v in m.named_parameters()}
    params["start"] = start
    return pred, params, h, c, mem


def make_mask(kind: str, rng: np.random.Generator, batch: int = B, steps: int = T) -> np.ndarray:
    if kind == "all":
        return np.ones((batch, steps), dtype=bool)
    if kind == "none":
        return np.zeros((batch, steps), dtype=bool)
    mask = rng.random((batch, steps)) < 0.5
    mask[0, 1:] = [True, False] * ((steps - 1) // 2) + [True] * ((steps - 1) % 2)
    return mask


def compare(torch, dec, rng, mask, batch=B, steps=T, lengths=None, mem_steps=S, rtol=1e-4,
            atol=2e-5):
    targets = rng.standard_normal((batch, steps, dec.input_size)).astype(np.float32)
    h0 = rng.standard_normal((batch, dec.hidden_size)).astype(np.float32)
    c0 = rng.standard_normal((batch, dec.hidden_size)).astype(np.float32) if dec.cell == "lstm" else None
    memory = None
    if dec.attention is not None:
        memory = rng.standard_normal((batch, mem_steps, dec.attention.kdim)).astype(np.float32)
    grad = rng.standard_normal((batch, steps, dec.output_size)).astype(np.float32)

    dec.zero_grad()
    h0_s = seqlab.tensor(h0, requires_grad=True)
    c0_s = None if c0 is None else seqlab.tensor(c0, requires_grad=True)
    mem_s = None if memory is None else seqlab.tensor(memory, requires_grad=True)
    pred = dec(targets, h0_s, c0_s, teacher_forcing=mask, memory=mem_s, memory_lengths=lengths)
    pred.backward(grad)

    ref, params, h_t, c_t, mem_t = torch_reference(torch, dec, targets, mask, h0, c0, memory, lengths)
    ref.backward(torch.from_numpy(grad))
    np.testing.assert_allclose(pred.data, ref.detach().numpy(), rtol=rtol, atol=atol)
    ours = dict(dec.named_parameters())
    assert set(ours) == set(params)
    for name, p in params.items():
        np.testing.assert_allclose(ours[name].grad, p.grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"gradient of {name}")
    np.testing.assert_allclose(h0_s.grad, h_t.grad.numpy(), rtol=rtol, atol=atol, err_msg="h0")
    if c0 is not None:
        np.testing.assert_allclose(c0_s.grad, c_t.grad.numpy(), rtol=rtol, atol=atol, err_msg="c0")
    if memory is not None:
        np.testing.assert_allclose(mem_s.grad, mem_t.grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg="memory")
    return pred


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("kind", ["all", "none", "mixed"])
def test_matches_torch_loop(torch, rng, cell, attention, kind):
    dec = RecurrentDecoder(E, H, cell=cell, attention_dim=A if attention else None, num_heads=HEADS)
    compare(torch, dec, rng, make_mask(kind, rng))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_memory_lengths_and_orthogonal_init(torch, rng, cell):
    dec = RecurrentDecoder(E, H, cell=cell, attention_dim=A, num_heads=4, init="orthogonal")
    compare(torch, dec, rng, make_mask("mixed", rng), lengths=np.array([4, 1, 2]))


def test_attention_dim_equal_to_hidden_uses_in_proj_weight(torch, rng):
    dec = RecurrentDecoder(E, H, cell="gru", attention_dim=H, num_heads=HEADS)
    assert "attention.in_proj_weight" in dict(dec.named_parameters())
    mha = torch.nn.MultiheadAttention(H, HEADS, kdim=H, vdim=H, batch_first=True)
    mha.load_state_dict({k[len("attention."):]: torch.from_numpy(v)
                         for k, v in dec.state_dict().items() if k.startswith("attention.")})
    compare(torch, dec, rng, make_mask("mixed", rng), lengths=np.array([2, 4, 3]))


def test_batch_one_and_single_step(torch, rng):
    dec = RecurrentDecoder(E, H, cell="lstm", attention_dim=A, num_heads=HEADS)
    compare(torch, dec, rng, make_mask("none", rng, 1, 7), batch=1, steps=7)
    compare(torch, dec, rng, make_mask("none", rng, 2, 1), batch=2, steps=1, mem_steps=1)


def test_output_size_differs_all_teacher_forced(torch, rng):
    dec = RecurrentDecoder(E, H, cell="gru", attention_dim=A, num_heads=HEADS, output_size=3)
    compare(torch, dec, rng, make_mask("all", rng))


def test_larger_shape_with_threads(torch, rng):
    """Shapes above the kernels' parallel grain and SIMD width, with 2 threads."""
    previous = seqlab.get_num_threads()
    seqlab.set_num_threads(2)
    try:
        dec = RecurrentDecoder(40, 64, cell="lstm", attention_dim=48, num_heads=8)
        compare(torch, dec, rng, make_mask("mixed", rng, 16, 12), batch=16, steps=12,
                mem_steps=9, lengths=rng.integers(1, 10, size=16), rtol=2e-4, atol=5e-5)
    finally:
        seqlab.set_num_threads(previous)


@pytest.mark.parametrize("attention", [False, True])
def test_rows_split_over_threads_match_torch(torch, rng, attention):
    """A batch large enough for each of 2 threads to run the whole sequence for its own
    rows (at least one register block of rows each, small packed weights)."""
    previous = seqlab.get_num_threads()
    seqlab.set_num_threads(2)
    try:
        dec = RecurrentDecoder(12, 16, cell="lstm", attention_dim=10 if attention else None, num_heads=4)
        compare(torch, dec, rng, make_mask("mixed", rng, 30, 7), batch=30, steps=7, mem_steps=6,
                lengths=rng.integers(1, 7, size=30) if attention else None, rtol=2e-4, atol=5e-5)
    finally:
        seqlab.set_num_threads(previous)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("hidden", [16, 300])
def test_same_bits_for_any_thread_count(rng, cell, hidden):
    """Each row's arithmetic is the same whether a step splits its products over the pool
    (wide decoders) or each thread runs the whole sequence for its own batch rows (narrow),
    with fed-back predictions, attention and a per-row gate bias."""
    batch, steps, features, mem_steps = 40, 6, 9, 5
    targets = rng.standard_normal((batch, steps, features)).astype(np.float32)
    memory = rng.standard_normal((batch, mem_steps, 7)).astype(np.float32)
    lengths = rng.integers(1, mem_steps + 1, size=batch)
    mask = make_mask("mixed", rng, batch, steps)
    results = []
    previous = seqlab.get_num_threads()
    try:
        for threads in (1, 2, 3):
            seqlab.set_num_threads(threads)
            seqlab.manual_seed(3)
            dec = RecurrentDecoder(features, hidden, cell=cell, attention_dim=7, num_heads=2)
            gates = (4 if cell == "lstm" else 3) * hidden
            bias = seqlab.tensor(np.linspace(-1, 1, batch * gates, dtype=np.float32).reshape(batch, gates),
                                 requires_grad=True)
            mem = seqlab.tensor(memory, requires_grad=True)
            pred = dec(targets, teacher_forcing=mask, memory=mem, memory_lengths=lengths, gate_bias=bias)
            (pred * pred).sum().backward()
            results.append([pred.data, mem.grad, bias.grad] + [p.grad for p in dec.parameters()])
    finally:
        seqlab.set_num_threads(previous)
    for later in results[1:]:
        for a, b in zip(results[0], later, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("heads", [2, 16])
def test_wide_and_narrow_heads(torch, rng, heads):
    """Heads of 32 values (context summed over whole rows) and of 4 (dot products along
    the memory steps), memory longer than a SIMD batch with a ragged tail."""
    dec = RecurrentDecoder(20, 64, cell="gru", attention_dim=24, num_heads=heads)
    compare(torch, dec, rng, make_mask("mixed", rng, 5, 6), batch=5, steps=6, mem_steps=37,
            lengths=np.array([37, 1, 17, 16, 33]), rtol=2e-4, atol=5e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_gate_bias_is_a_condition_read_at_every_step(torch, rng, cell):
    """gate_bias = code @ W_ic^T equals torch's cell reading [u_t; code] with weight
    [W_ih, W_ic] at every step (through fed-back steps): outputs, W_ic, code and h0
    gradients."""
    C = 3
    dec = RecurrentDecoder(E, H, cell=cell, init="orthogonal")
    proj = seqlab.nn.Linear(C, dec.weight_ih.shape[0], bias=False)
    code = rng.standard_normal((B, C)).astype(np.float32)
    targets = rng.standard_normal((B, T, E)).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    mask = make_mask("mixed", rng)
    grad = rng.standard_normal((B, T, E)).astype(np.float32)
    code_s = seqlab.tensor(code, requires_grad=True)
    h0_s = seqlab.tensor(h0, requires_grad=True)
    pred = dec(targets, h0_s, teacher_forcing=mask, gate_bias=proj(code_s))
    pred.backward(grad)

    state = {k: torch.from_numpy(v) for k, v in dec.state_dict().items()}
    w_ic = torch.from_numpy(proj.weight.data.copy()).requires_grad_()
    out = torch.nn.Linear(H, E)
    out.load_state_dict({"weight": state["out.weight"], "bias": state["out.bias"]})
    code_t = torch.from_numpy(code).requires_grad_()
    h = h0_t = torch.from_numpy(h0).requires_grad_()
    c = torch.zeros(B, H)
    y, tf = torch.from_numpy(targets), torch.from_numpy(mask)
    preds, prev = [], None
    for t in range(T):
        u = state["start"].expand(B, -1) if t == 0 else torch.where(tf[:, t : t + 1], y[:, t - 1], prev)
        x = torch.cat([u, code_t], dim=1)
        w_ih = torch.cat([state["weight_ih"], w_ic], dim=1)
        if cell == "lstm":
            h, c = torch._VF.lstm_cell(x, (h, c), w_ih, state["weight_hh"], state["bias_ih"],
                                       state["bias_hh"])
        elif cell == "gru":
            h = torch._VF.gru_cell(x, h, w_ih, state["weight_hh"], state["bias_ih"], state["bias_hh"])
        else:
            h = torch._VF.rnn_tanh_cell(x, h, w_ih, state["weight_hh"], state["bias_ih"],
                                        state["bias_hh"])
        prev = out(h)
        preds.append(prev)
    ref = torch.stack(preds, dim=1)
    ref.backward(torch.from_numpy(grad))
    np.testing.assert_allclose(pred.data, ref.detach().numpy(), rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(proj.weight.grad, w_ic.grad.numpy(), rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(code_s.grad, code_t.grad.numpy(), rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(h0_s.grad, h0_t.grad.numpy(), rtol=1e-4, atol=2e-5)
    with pytest.raises(ValueError, match="gate_bias"):
        dec(targets, h0, teacher_forcing=mask, gate_bias=np.zeros((B, 5), np.float32))


def test_finite_differences(rng):
    """Central differences in float32 on a tiny case (through feedback and attention)."""
    dec = RecurrentDecoder(3, 4, cell="gru", attention_dim=3, num_heads=2)
    targets = rng.standard_normal((2, 3, 3)).astype(np.float32)
    memory = rng.standard_normal((2, 3, 3)).astype(np.float32)
    h0 = rng.standard_normal((2, 4)).astype(np.float32)
    mask = np.array([[True, False, True], [True, False, False]])
    weights = rng.standard_normal((2, 3, 3)).astype(np.float32)

    def loss(mem: np.ndarray) -> float:
        with seqlab.no_grad():
            out = dec(targets, h0, teacher_forcing=mask, memory=mem)
        return float((out.data.astype(np.float64) * weights).sum())

    mem = seqlab.tensor(memory, requires_grad=True)
    out = dec(targets, h0, teacher_forcing=mask, memory=mem)
    out.backward(weights)
    eps = 1e-2
    for name, p in [("weight_hh", dec.weight_hh), ("start", dec.start),
                    ("attention.k_proj_weight", dec.attention.k_proj_weight),
                    ("out.weight", dec.out.weight), ("memory", mem)]:
        flat = p.data.reshape(-1)
        for i in range(0, flat.size, max(1, flat.size // 5)):
            old = flat[i]
            flat[i] = old + eps
            up = loss(memory if p is not mem else p.data)
            flat[i] = old - eps
            down = loss(memory if p is not mem else p.data)
            flat[i] = old
            numeric = (up - down) / (2 * eps)
            assert p.grad.reshape(-1)[i] == pytest.approx(numeric, rel=2e-2, abs=2e-3), (name, i)


def test_teacher_forcing_sampling_is_seeded(rng):
    dec = RecurrentDecoder(E, H)
    seqlab.manual_seed(7)
    a = dec.sample_teacher_forcing(4, 30, 0.5)
    seqlab.manual_seed(7)
    b = dec.sample_teacher_forcing(4, 30, 0.5)
    np.testing.assert_array_equal(a, b)
    assert 0.3 < a.mean() < 0.7
    assert dec.sample_teacher_forcing(2, 3, 1.0).all()
    assert not dec.sample_teacher_forcing(2, 3, 0.0).any()

    targets = rng.standard_normal((B, T, E)).astype(np.float32)
    seqlab.manual_seed(3)
    sampled = dec(targets, teacher_forcing=0.5).data
    seqlab.manual_seed(3)
    mask = dec.sample_teacher_forcing(B, T, 0.5)
    np.testing.assert_array_equal(sampled, dec(targets, teacher_forcing=mask).data)
    assert not np.array_equal(sampled, dec(targets, teacher_forcing=~mask).data)


def test_default_mask_follows_ratio_and_mode(rng):
    dec = RecurrentDecoder(E, H, cell="gru")
    targets = rng.standard_normal((B, T, E)).astype(np.float32)
    forced = dec(targets, teacher_forcing=np.ones((B, T), bool)).data
    free = dec(targets, teacher_forcing=np.zeros((B, T), bool)).data
    assert not np.allclose(forced, free)
    np.testing.assert_array_equal(dec(targets).data, forced)  # training, ratio 1.0
    np.testing.assert_array_equal(dec(targets, teacher_forcing=True).data, forced)
    np.testing.assert_array_equal(dec(targets, teacher_forcing=False).data, free)
    dec.teacher_forcing_ratio = 0.0
    np.testing.assert_array_equal(dec(targets).data, free)
    dec.teacher_forcing_ratio = 1.0
    dec.eval()
    np.testing.assert_array_equal(dec(targets).data, free)  # eval: autoregressive


def test_repeated_steps_reuse_buffers(rng):
    dec = RecurrentDecoder(E, H, cell="lstm", attention_dim=A, num_heads=HEADS)
    targets = rng.standard_normal((B, T, E)).astype(np.float32)
    memory = rng.standard_normal((B, S, A)).astype(np.float32)
    mask = make_mask("mixed", rng)
    grads = []
    for _ in range(3):
        dec.zero_grad()
        out = dec(targets, teacher_forcing=mask, memory=memory)
        out.sum().backward()
        grads.append(dec.weight_hh.grad.copy())
        with pytest.raises(RuntimeError, match="already used"):
            out.backward(np.ones_like(out.data))
    np.testing.assert_array_equal(grads[0], grads[2])


def test_bad_input_raises_value_error(rng):
    targets = rng.standard_normal((B, T, E)).astype(np.float32)
    memory = rng.standard_normal((B, S, A)).astype(np.float32)
    plain = RecurrentDecoder(E, H)
    with pytest.raises(ValueError, match="num_heads"):
        RecurrentDecoder(E, H, attention_dim=A, num_heads=3)
    with pytest.raises(ValueError, match="cell"):
        RecurrentDecoder(E, H, cell="transformer")
    with pytest.raises(ValueError, match="targets"):
        plain(targets[:, :, :4])
    with pytest.raises(ValueError, match="h0"):
        plain(targets, np.zeros((B, H + 1), np.float32))
    with pytest.raises(ValueError, match="c0"):
        RecurrentDecoder(E, H, cell="gru")(targets, None, np.zeros((B, H), np.float32))
    with pytest.raises(ValueError, match="teacher_forcing"):
        plain(targets, teacher_forcing=np.ones((B, T + 1), bool))
    with pytest.raises(ValueError, match="teacher_forcing"):
        plain(targets, teacher_forcing=1.5)
    with pytest.raises(ValueError, match="memory"):
        plain(targets, memory=memory)
    with pytest.raises(ValueError, match="output_size"):
        RecurrentDecoder(E, H, output_size=E + 1)(targets, teacher_forcing=0.5)
    attn = RecurrentDecoder(E, H, attention_dim=A, num_heads=HEADS)
    with pytest.raises(ValueError, match="memory"):
        attn(targets)
    with pytest.raises(ValueError, match="memory"):
        attn(targets, memory=memory[:, :, :3])
    with pytest.raises(ValueError, match="memory_lengths"):
        attn(targets, memory=memory, memory_lengths=np.array([1, 0, 2]))
    with pytest.raises(ValueError, match="memory_lengths"):
        attn(targets, memory=memory, memory_lengths=np.array([1, 2]))


def test_initialisations():
    ortho = RecurrentDecoder(E, H, cell="lstm", attention_dim=A, init="orthogonal")
    for g in range(4):
        block = ortho.weight_hh.data[g * H : (g + 1) * H]
        np.testing.assert_allclose(block @ block.T, np.eye(H), atol=1e-5)
    assert not ortho.bias_ih.data.any() and not ortho.bias_hh.data.any()
    assert not ortho.out.bias.data.any()
    bound = np.sqrt(6.0 / (E + 4 * H))
    assert np.abs(ortho.weight_ih.data).max() <= bound
    assert np.abs(ortho.weight_ih.data).max() > 0.8 * bound
    default = RecurrentDecoder(E, H, cell="gru")
    assert np.abs(default.weight_hh.data).max() <= 1 / np.sqrt(H)
    assert default.bias_hh.data.std() > 0.1 / np.sqrt(H)
    assert not ortho.attention.in_proj_bias.data.any()
    with pytest.raises(ValueError, match="init"):
        RecurrentDecoder(E, H, init="zeros")


def test_returned_predictions_are_the_fed_back_ones(rng):
    """Teacher-forcing the free-running predictions onto themselves reproduces them."""
    dec = RecurrentDecoder(E, H, cell="lstm", attention_dim=A, num_heads=HEADS)
    targets = rng.standard_normal((B, T, E)).astype(np.float32)
    memory = rng.standard_normal((B, S, A)).astype(np.float32)
    free = dec(targets, teacher_forcing=False, memory=memory).data
    again = dec(free, teacher_forcing=True, memory=memory).data
    np.testing.assert_allclose(again, free, rtol=1e-5, atol=1e-6)
    assert not np.allclose(free, dec(targets, teacher_forcing=True, memory=memory).data)
