"""MultiheadAttention, TransformerEncoderLayer and the decoder block against PyTorch with
loaded state dicts: outputs, input gradients and every parameter gradient."""

from __future__ import annotations

import numpy as np
import pytest

import seqlab
import seqlab.nn as nn

RTOL, ATOL = 1e-4, 3e-5


def _load_from_torch(ours, ref):
    ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})


def _check_grads(ours, ref):
    theirs = dict(ref.named_parameters())
    names = [n for n, _ in ours.named_parameters()]
    assert names == list(theirs), (names, list(theirs))
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, theirs[name].grad.numpy(), rtol=RTOL, atol=ATOL, err_msg=name)


def _run(torch, rng, ours, ref, inputs, call, tcall):
    """Forward both with the same inputs, backward a random gradient, compare everything."""
    xs = [seqlab.tensor(a, requires_grad=True) for a in inputs]
    xt = [torch.tensor(a, requires_grad=True) for a in inputs]
    out, w = call(ours, xs)
    ref_out, ref_w = tcall(ref, xt)
    np.testing.assert_allclose(out.data, ref_out.detach().numpy(), rtol=RTOL, atol=ATOL)
    if ref_w is not None:
        np.testing.assert_allclose(w.data, ref_w.detach().numpy(), rtol=RTOL, atol=ATOL)
    g = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(g)
    ref_out.backward(torch.tensor(g))
    for a, b in zip(xs, xt):
        if b.grad is not None:
            np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=RTOL, atol=ATOL)
    _check_grads(ours, ref)


@pytest.mark.parametrize("flash", [False, True])
@pytest.mark.parametrize("masks", ["none", "bool", "float", "padding", "both"])
def test_mha_self_attention(torch, rng, masks, flash):
    E, H, B, T = 32, 4, 3, 21
    ref = torch.nn.MultiheadAttention(E, H, batch_first=True)
    ours = nn.MultiheadAttention(E, H)
    _load_from_torch(ours, ref)
    attn_mask = kpm = None
    if masks in ("bool", "both"):
        attn_mask = np.triu(np.ones((T, T), dtype=bool), 1)
    if masks == "float":
        attn_mask = rng.standard_normal((B * H, T, T)).astype(np.float32)
    if masks in ("padding", "both"):
        kpm = np.zeros((B, T), dtype=bool)
        kpm[1, 15:] = True
        kpm[2, 3:] = True
    x = rng.standard_normal((B, T, E)).astype(np.float32)
    previous = seqlab.functional.set_attention_flash_threshold(0 if flash else 10**9)
    try:
        _run(
            torch,
            rng,
            ours,
            ref,
            [x],
            lambda m, a: m(
                a[0], a[0], a[0], key_padding_mask=kpm, attn_mask=attn_mask, need_weights=not flash
            ),
            lambda m, a: m(
                a[0],
                a[0],
                a[0],
                key_padding_mask=None if kpm is None else torch.tensor(kpm),
                attn_mask=None if attn_mask is None else torch.tensor(attn_mask),
                need_weights=not flash,
            ),
        )
    finally:
        seqlab.functional.set_attention_flash_threshold(previous)


@pytest.mark.parametrize("kind", ["kv_shared", "separate", "kdim_vdim"])
def test_mha_cross_attention(torch, rng, kind):
    E, H, B, Tq, Tk = 24, 3, 2, 7, 11
    kdim, vdim = (10, 14) if kind == "kdim_vdim" else (None, None)
    ref = torch.nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim, batch_first=True)
    ours = nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim)
    _load_from_torch(ours, ref)
    q = rng.standard_normal((B, Tq, E)).astype(np.float32)
    k = rng.standard_normal((B, Tk, kdim or E)).astype(np.float32)
    v = rng.standard_normal((B, Tk, vdim or E)).astype(np.float32)
    if kind == "kv_shared":
        _run(
            torch, rng, ours, ref, [q, k], lambda m, a: m(a[0], a[1], a[1]), lambda m, a: m(a[0], a[1], a[1])
        )
    else:
        _run(
            torch,
            rng,
            ours,
            ref,
            [q, k, v],
            lambda m, a: m(a[0], a[1], a[2], average_attn_weights=False),
            lambda m, a: m(a[0], a[1], a[2], average_attn_weights=False),
        )
    if kind == "kdim_vdim":
        assert "q_proj_weight" in ours.state_dict() and "in_proj_weight" not in ours.state_dict()


def test_mha_seq_first_unbatched_and_no_bias(torch, rng):
    E, H = 16, 2
    ref = torch.nn.MultiheadAttention(E, H, bias=False)  # torch's default: (T, B, E)
    ours = nn.MultiheadAttention(E, H, bias=False, batch_first=False)
    _load_from_torch(ours, ref)
    x = rng.standard_normal((9, 2, E)).astype(np.float32)
    _run(torch, rng, ours, ref, [x], lambda m, a: m(a[0], a[0], a[0]), lambda m, a: m(a[0], a[0], a[0]))
    u = rng.standard_normal((9, E)).astype(np.float32)
    out, w = ours(u, u, u)
    ref_out, ref_w = ref(torch.tensor(u), torch.tensor(u), torch.tensor(u))
    np.testing.assert_allclose(out.data, ref_out.detach().numpy(), rtol=RTOL, atol=ATOL)
    assert w.shape == (9, 9)


def test_mha_causal_and_state_dict_to_torch(torch, rng):
    E, H, B, T = 32, 8, 2, 13
    ours = nn.MultiheadAttention(E, H)
    ours.in_proj_bias.data[...] = rng.standard_normal(3 * E)
    ref = torch.nn.MultiheadAttention(E, H, batch_first=True)
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((B, T, E)).astype(np.float32)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(T)
    out, _ = ours(x, x, x, is_causal=True, need_weights=False)
    ref_out, _ = ref(*(torch.tensor(x),) * 3, attn_mask=mask, need_weights=False)
    np.testing.assert_allclose(out.data, ref_out.detach().numpy(), rtol=RTOL, atol=ATOL)


def test_mha_errors(rng):
    with pytest.raises(ValueError, match=r"embed_dim \(30\).*num_heads \(4\)"):
        nn.MultiheadAttention(30, 4)
    m = nn.MultiheadAttention(16, 4)
    x = rng.standard_normal((2, 5, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="query"):
        m(x[..., :8], x, x)
    with pytest.raises(ValueError, match="key_padding_mask"):
        m(x, x, x, key_padding_mask=np.zeros((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="attn_mask"):
        m(x, x, x, attn_mask=np.zeros((5, 4), dtype=bool))
    with pytest.raises(ValueError, match="key/value"):
        m(x, x, x[:, :3])


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_eval_with_dropout(torch, rng, norm_first, activation):
    E, H, B, T = 32, 4, 3, 10
    ref = torch.nn.TransformerEncoderLayer(
        E, H, 64, dropout=0.1, activation=activation, batch_first=True, norm_first=norm_first
    ).eval()
    ours = nn.TransformerEncoderLayer(
        E, H, 64, dropout=0.1, activation=activation, norm_first=norm_first
    ).eval()
    _load_from_torch(ours, ref)
    kpm = np.zeros((B, T), dtype=bool)
    kpm[0, 7:] = True
    mask = np.triu(np.ones((T, T), dtype=bool), 1)
    x = rng.standard_normal((B, T, E)).astype(np.float32)
    _run(
        torch,
        rng,
        ours,
        ref,
        [x],
        lambda m, a: (m(a[0], src_mask=mask, src_key_padding_mask=kpm), None),
        lambda m, a: (m(a[0], src_mask=torch.tensor(mask), src_key_padding_mask=torch.tensor(kpm)), None),
    )


def test_encoder_layer_train_mode_no_dropout_and_state_dict_both_ways(torch, rng):
    E, H, B, T = 16, 2, 2, 6
    ours = nn.TransformerEncoderLayer(E, H, 40, dropout=0.0)
    ref = torch.nn.TransformerEncoderLayer(E, H, 40, dropout=0.0, batch_first=True).train()
    assert list(ours.state_dict()) == list(ref.state_dict())
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((B, T, E)).astype(np.float32)
    _run(torch, rng, ours, ref, [x], lambda m, a: (m(a[0]), None), lambda m, a: (m(a[0]), None))


def test_encoder_layer_dropout_is_seeded(rng):
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.3)
    x = rng.standard_normal((2, 5, 16)).astype(np.float32)
    seqlab.manual_seed(3)
    a = layer(x).data
    seqlab.manual_seed(3)
    b = layer(x).data
    seqlab.manual_seed(4)
    c = layer(x).data
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_decoder_block_matches_torch_composition(torch, rng):
    E, H, B, T = 32, 4, 2, 12
    block = nn.TransformerDecoderBlock(E, H)
    for p in block.parameters():
        p.data[...] += rng.standard_normal(p.shape).astype(np.float32) * 0.05
    state = {k: torch.tensor(v) for k, v in block.state_dict().items()}
    ln1 = torch.nn.LayerNorm(E)
    ln2 = torch.nn.LayerNorm(E)
    attn = torch.nn.MultiheadAttention(E, H, batch_first=True)
    fc, proj = torch.nn.Linear(E, 4 * E), torch.nn.Linear(4 * E, E)
    for prefix, mod in (("ln_1.", ln1), ("ln_2.", ln2), ("attn.", attn), ("mlp.0.", fc), ("mlp.2.", proj)):
        mod.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    x = rng.standard_normal((B, T, E)).astype(np.float32)
    xs = seqlab.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    out = block(xs)
    h = ln1(xt)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(T)
    a, _ = attn(h, h, h, attn_mask=causal, need_weights=False)
    y = xt + a
    ref = y + proj(torch.nn.functional.gelu(fc(ln2(y)), approximate="tanh"))
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=RTOL, atol=ATOL)
    out.sum().backward()
    ref.sum().backward()
    np.testing.assert_allclose(xs.grad, xt.grad.numpy(), rtol=RTOL, atol=1e-4)
    np.testing.assert_allclose(
        block.attn.in_proj_weight.grad, attn.in_proj_weight.grad.numpy(), rtol=RTOL, atol=1e-4
    )
    np.testing.assert_allclose(block.mlp[0].weight.grad, fc.weight.grad.numpy(), rtol=RTOL, atol=1e-4)
    # Causality: changing the last position leaves earlier outputs unchanged.
    x2 = x.copy()
    x2[:, -1] += 1.0
    np.testing.assert_array_equal(block(x2).data[:, :-1], out.data[:, :-1])
    assert nn.GPTBlock is nn.TransformerDecoderBlock
