"""The output layer fused with its cross-entropy (F.linear_cross_entropy, GPT.loss): loss and
both gradients against PyTorch's cross_entropy(x @ W.T), thread counts, finite differences,
bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import seqlab
import seqlab.functional as F
from conftest import central_difference
from seqlab.models.code_lm import GPT, CodeLMConfig


def _problem(rng, N, D, V, ignored=()):
    x = rng.standard_normal((N, D)).astype(np.float32)
    w = (rng.standard_normal((V, D)) * 0.5).astype(np.float32)
    t = rng.integers(0, V, N)
    t[list(ignored)] = -100
    return x, w, t


def _fused(x, w, t, g=1.0, w_grad=None, **kw):
    xs = seqlab.tensor(x, requires_grad=True)
    ws = seqlab.tensor(w, requires_grad=True)
    if w_grad is not None:
        ws.grad = w_grad.copy()
    loss = F.linear_cross_entropy(xs, ws, t, **kw)
    loss.backward(np.float32(g))
    return loss.data, xs.grad, ws.grad


def _torch_reference(torch, x, w, t, g=1.0, **kw):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    logits = (xt @ wt.T).reshape(-1, w.shape[0])
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(t).reshape(-1), **kw)
    (loss * g).backward()
    return loss.item(), xt.grad.numpy(), wt.grad.numpy()


# N odd and over several row blocks (256 rows each at V = 1500) and thread shares.
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("N, D, V", [(37, 24, 53), (601, 32, 1500)])
def test_loss_and_gradients_match_torch(torch, rng, threads, N, D, V):
    x, w, t = _problem(rng, N, D, V, ignored=(0, 5, N - 1))
    previous = seqlab.get_num_threads()
    try:
        seqlab.set_num_threads(threads)
        loss, dx, dw = _fused(x, w, t, g=0.75)
    finally:
        seqlab.set_num_threads(previous)
    ref_loss, ref_dx, ref_dw = _torch_reference(torch, x, w, t, g=0.75)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dw, ref_dw, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(dx[[0, 5, N - 1]], 0.0)


def test_same_thread_count_gives_identical_results_and_threads_agree(rng):
    x, w, t = _problem(rng, 601, 32, 1500, ignored=(3,))
    previous = seqlab.get_num_threads()
    runs = {}
    try:
        for threads in (1, 2, 2):
            seqlab.set_num_threads(threads)
            runs.setdefault(threads, []).append(_fused(x, w, t))
    finally:
        seqlab.set_num_threads(previous)
    for a, b in zip(*runs[2]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(runs[1][0], runs[2][0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_language_model_layout_custom_ignore_index_and_tied_accumulation(torch, rng):
    B, T, D, V = 3, 7, 16, 41
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    w = rng.standard_normal((V, D)).astype(np.float32)
    t = rng.integers(1, V, (B, T))
    t[2, 4:] = 0
    earlier = rng.standard_normal((V, D)).astype(np.float32)  # e.g. the embedding's gradient
    loss, dx, dw = _fused(x, w, t, w_grad=earlier, ignore_index=0)
    ref_loss, ref_dx, ref_dw = _torch_reference(torch, x, w, t, ignore_index=0)
    assert dx.shape == (B, T, D)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dw, earlier + ref_dw, rtol=1e-4, atol=1e-6)


def test_finite_differences(rng):
    x, w, t = _problem(rng, 9, 5, 13, ignored=(4,))
    loss, dx, dw = _fused(x, w, t)

    def value() -> float:
        with seqlab.no_grad():
            return float(F.linear_cross_entropy(x, w, t).item())

    for index in [(0, 0), (3, 2), (8, 4), (4, 1)]:
        np.testing.assert_allclose(dx[index], central_difference(value, x, index, 1e-2), rtol=2e-2, atol=2e-3)
    for index in [(0, 0), (t[1], 3), (12, 4)]:
        np.testing.assert_allclose(dw[index], central_difference(value, w, index, 1e-2), rtol=2e-2, atol=2e-3)


def test_every_row_ignored_gives_zero_loss_and_gradients(rng):
    x, w, t = _problem(rng, 6, 4, 9, ignored=range(6))
    loss, dx, dw = _fused(x, w, t)
    assert loss == 0.0
    np.testing.assert_array_equal(dx, 0.0)
    np.testing.assert_array_equal(dw, 0.0)


def test_no_grad_records_nothing_and_second_backward_raises(rng):
    x, w, t = _problem(rng, 5, 4, 7)
    ws = seqlab.tensor(w, requires_grad=True)
    with seqlab.no_grad():
        assert not F.linear_cross_entropy(x, ws, t).requires_grad
    loss = F.linear_cross_entropy(x, ws, t)
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through this node ran already"):
        loss._backward(np.float32(1.0))


def _bf16(torch, a: np.ndarray) -> np.ndarray:
    """a rounded to bf16 (nearest even) by PyTorch, as float64."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).bfloat16().double().numpy()


def _needs_amx() -> None:
    if not F.bf16_gemm_available() or F.bf16_gemm_engine() != "amx":
        pytest.skip("the fused bf16 op runs on AMX tiles; this process has none")


# A block of rows, several blocks with an odd tail, and (V = 20,000: 416 rows of G^T per
# super-block of at most 16 MiB) several super-blocks of the weight gradient.
@pytest.mark.parametrize("N, D, V", [(37, 24, 53), (601, 40, 1500), (500, 16, 20000)])
def test_bf16_fused_matches_the_rounded_reference_with_the_same_bits_at_1_and_2_threads(torch, rng, N, D, V):
    _needs_amx()
    x, w, t = _problem(rng, N, D, V, ignored=(0, 5, N - 1))
    previous = seqlab.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            seqlab.set_num_threads(threads)
            with F.gemm_precision("bf16"):
                runs.append(_fused(x, w, t, g=0.75))
    finally:
        seqlab.set_num_threads(previous)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    loss, dx, dw = runs[0]
    # float64 of the rounded operands: logits exact but for the fp32 summation, G rounded to
    # bf16 (relative error <= 2^-9) before its two products
    xb, wb = _bf16(torch, x), _bf16(torch, w)
    logits = xb @ wb.T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    keep = t != -100
    ref_loss = -np.log(p[keep, t[keep]]).mean()
    G = p.copy()
    G[keep, t[keep]] -= 1.0
    G[~keep] = 0.0
    G *= 0.75 / keep.sum()
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    assert np.all(np.abs(dx - G @ wb) <= 2.0**-8 * (np.abs(G) @ np.abs(wb)) + 1e-12)
    assert np.all(np.abs(dw - G.T @ xb) <= 2.0**-8 * (np.abs(G.T) @ np.abs(xb)) + 1e-12)
    np.testing.assert_array_equal(dx[[0, 5, N - 1]], 0.0)


def test_bf16_fused_agrees_with_the_unfused_bf16_layer(rng):
    _needs_amx()
    x, w, t = _problem(rng, 300, 64, 700, ignored=(7,))
    with F.gemm_precision("bf16"):
        fused = _fused(x, w, t)
        xs, ws = seqlab.tensor(x, requires_grad=True), seqlab.tensor(w, requires_grad=True)
        unfused = F.cross_entropy(F.linear(xs, ws), t)
        unfused.backward()
    np.testing.assert_allclose(fused[0], unfused.data, rtol=1e-6)
    np.testing.assert_allclose(fused[1], xs.grad, rtol=1e-2, atol=1e-6)
    np.testing.assert_allclose(fused[2], ws.grad, rtol=1e-2, atol=1e-6)


def test_workspace_and_gradient_buffers_any_size_same_bits(rng):
    x, w, t = _problem(rng, 130, 24, 300, ignored=(2,))
    precisions = ["fp32"] + (["bf16"] if F.bf16_gemm_available() and F.bf16_gemm_engine() == "amx" else [])
    for precision in precisions:
        bf16 = precision == "bf16"
        need = seqlab._core.linear_cross_entropy_workspace(130, 24, 300, True, bf16)
        assert need > 0
        runs = [seqlab._core.linear_cross_entropy(x, w, t, -100, True, bf16, None, None, ws)
                for ws in (None, np.empty(3, np.float32), np.full(need // 4 + 64, np.nan, np.float32))]
        gx, gw = np.full((130, 24), np.nan, np.float32), np.full((300, 24), np.nan, np.float32)
        runs.append(seqlab._core.linear_cross_entropy(x, w, t, -100, True, bf16, gx, gw, None))
        assert runs[-1][2] is gx and runs[-1][3] is gw
        for run in runs[1:]:
            for a, b in zip(runs[0], run):
                np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"grad_hidden: expected shape \(130, 24\), got \(130, 23\)"):
        seqlab._core.linear_cross_entropy(x, w, t, -100, True, False, np.empty((130, 23), np.float32))


def test_pooled_gradients_of_two_live_nodes_stay_apart(rng):
    first, second = _problem(rng, 400, 64, 1200), _problem(rng, 400, 64, 1200)
    alone = [_fused(*problem) for problem in (first, second)]
    nodes = []
    for x, w, t in (first, second):
        xs, ws = seqlab.tensor(x, requires_grad=True), seqlab.tensor(w, requires_grad=True)
        nodes.append((F.linear_cross_entropy(xs, ws, t), xs, ws))
    for (loss, xs, ws), (_, ref_dx, ref_dw) in zip(nodes, alone):
        loss.backward()
        np.testing.assert_array_equal(xs.grad, ref_dx)
        np.testing.assert_array_equal(ws.grad, ref_dw)


# Runs the fused op under gemm_precision("bf16") and the unfused layer in a process whose
# bf16 GEMMs are on the vdpbf16ps tiles (SEQLAB_BF16_AMX=0); saves both and the engine.
_NO_AMX_RUN = """
import sys
import numpy as np
import seqlab
from seqlab import functional as F
a = np.load(sys.argv[1])
with F.gemm_precision("bf16"):
    fused = F.linear_cross_entropy(a["x"], a["w"], a["t"]).data
    unfused = F.cross_entropy(F.linear(a["x"], seqlab.tensor(a["w"])), a["t"]).data
try:
    seqlab._core.linear_cross_entropy(a["x"], a["w"], a["t"], -100, False, True)
    error = ""
except ValueError as e:
    error = str(e)
engine = np.array(F.bf16_gemm_engine())
np.savez(sys.argv[2], engine=engine, fused=fused, unfused=unfused, error=np.array(error))
"""


def test_bf16_without_amx_runs_the_unfused_layer(rng, tmp_path):
    if not F.bf16_gemm_available():
        pytest.skip("no bf16 GEMMs at this kernel level")
    x, w, t = _problem(rng, 20, 32, 50)
    np.savez(tmp_path / "in.npz", x=x, w=w, t=t)
    env = {**os.environ, "SEQLAB_BF16_AMX": "0",
           "PYTHONPATH": os.pathsep.join(p for p in (str(Path(seqlab.__file__).resolve().parents[1]),
                                                     os.environ.get("PYTHONPATH")) if p)}
    subprocess.run([sys.executable, "-c", _NO_AMX_RUN, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                   env=env, check=True, timeout=300)
    out = np.load(tmp_path / "out.npz")
    assert str(out["engine"]) == "avx512_bf16"
    np.testing.assert_array_equal(out["fused"], out["unfused"])
    assert "runs on AMX tiles; bf16_gemm_engine() is 'avx512_bf16'" in str(out["error"])


def test_bad_input_names_the_argument_and_shapes(rng):
    x, w, t = _problem(rng, 5, 4, 7)
    with pytest.raises(ValueError, match=r"input \(5, 4\) and weight \(7, 3\) do not fit"):
        F.linear_cross_entropy(x, w[:, :3], t)
    with pytest.raises(ValueError, match=r"target shape \(4,\) must equal input shape \(5, 4\)"):
        F.linear_cross_entropy(x, w, t[:4])
    with pytest.raises(ValueError, match=r"class index 7 at position 2 is out of range \[0, 7\)"):
        F.linear_cross_entropy(x, w, np.array([0, 1, 7, 2, 3]))
    with pytest.raises(TypeError, match="target: expected integer class indices"):
        F.linear_cross_entropy(x, w, t.astype(np.float32))


def _tiny_gpt() -> GPT:
    config = CodeLMConfig(
        vocab_size=300, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=16, seq_len=16, dropout=0.0
    )
    return GPT(config)


def test_gpt_loss_equals_cross_entropy_of_the_logits(rng):
    ids = rng.integers(0, 300, (3, 11))
    targets = rng.integers(0, 300, (3, 11))
    targets[1, 7:] = -100
    fused_model, plain_model = _tiny_gpt(), _tiny_gpt()
    plain_model.load_state_dict(fused_model.state_dict())
    fused = fused_model.loss(ids, targets)
    plain = F.cross_entropy(plain_model(ids), targets)
    np.testing.assert_allclose(fused.data, plain.data, rtol=1e-5)
    fused.backward()
    plain.backward()
    for (name, a), b in zip(fused_model.named_parameters(), plain_model.parameters()):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-3, atol=1e-6, err_msg=name)


def test_gpt_loss_refuses_targets_of_another_shape(rng):
    with pytest.raises(ValueError, match=r"target shape \(3, 10\) must equal input shape \(3, 11, 32\)"):
        _tiny_gpt().loss(rng.integers(0, 300, (3, 11)), rng.integers(0, 300, (3, 10)))
