"""The bf16 linear op (bf16 operands, fp32 accumulation) against exact and PyTorch references.

Reference: the operands rounded to bf16 as ``torch.Tensor.bfloat16`` does, then multiplied in
float64. A product of two bf16 values is exact in fp32 (8 + 8 significant bits), so the kernel
differs from the float64 result only by its fp32 summation: at most (K + 2) u sum_k |a_k b_k|
per element (K additions and the bias, u = 2^-24, the standard bound for recursive summation).
PyTorch's fp32 ``F.linear`` on the same rounded operands errs by as much again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import seqlab
from seqlab import functional as F
from seqlab.autograd import Tensor

pytestmark = pytest.mark.skipif(not F.bf16_gemm_available(),
                                reason="the kernels run at a level without bf16 GEMMs (no AVX512_BF16)")

U = 2.0**-24

# (M, K, N): tile multiples and not (the vdpbf16ps tile is 6 rows x 64 columns, k in pairs;
# the AMX register block 32 rows x 32 columns, k in steps of 32); the last has several
# blocks of rows at K = 300 (32 rows each on AMX).
SHAPES = [(1, 1, 1), (5, 3, 17), (7, 64, 64), (13, 33, 65), (100, 130, 200), (6, 2, 128), (97, 300, 47)]


def bf16(torch, a: np.ndarray) -> np.ndarray:
    """a rounded to bf16 (nearest even) by PyTorch, as float64."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).bfloat16().double().numpy()


def bound(a: np.ndarray, b: np.ndarray, extra: np.ndarray | float = 0.0) -> np.ndarray:
    """(K + 2) u |a| |b| (+ |extra|): the fp32 summation error bound of a @ b."""
    K = a.shape[-1]
    return (K + 2) * U * (np.abs(a) @ np.abs(b) + np.abs(extra)) + 1e-30


@pytest.mark.parametrize("M,K,N", SHAPES)
def test_linear_bf16_forward_and_backward_match_the_rounded_reference(torch, rng, M, K, N):
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    g = rng.standard_normal((M, N)).astype(np.float32)
    gw0 = rng.standard_normal((N, K)).astype(np.float32)  # gradients accumulate into what is there
    xb, wb, gb = bf16(torch, x), bf16(torch, w), bf16(torch, g)

    tx, tw, tbias = (Tensor(a, requires_grad=True) for a in (x, w, b))
    tw.grad = gw0.copy()
    y = F.linear_bf16(tx, tw, tbias)
    y.backward(g)
    assert y.data.dtype == np.float32 and tx.grad.dtype == np.float32 and tw.grad.dtype == np.float32

    # exact (float64) products of the rounded operands
    assert np.all(np.abs(y.data - (xb @ wb.T + b)) <= bound(xb, wb.T, b))
    assert np.all(np.abs(tx.grad - gb @ wb) <= bound(gb, wb))
    dw = gb.T @ xb
    assert np.all(np.abs(tw.grad - (gw0 + dw)) <= bound(gb.T, xb, gw0))
    np.testing.assert_allclose(tbias.grad, g.sum(0), rtol=1e-5, atol=1e-5)  # fp32 column sums

    # PyTorch's fp32 linear on the same rounded operands (its own summation order)
    px = torch.tensor(xb.astype(np.float32), requires_grad=True)
    pw = torch.tensor(wb.astype(np.float32), requires_grad=True)
    py = torch.nn.functional.linear(px, pw, torch.tensor(b))
    py.backward(torch.tensor(gb.astype(np.float32)))
    assert np.all(np.abs(y.data - py.detach().numpy()) <= 2 * bound(xb, wb.T, b))
    assert np.all(np.abs(tx.grad - px.grad.numpy()) <= 2 * bound(gb, wb))
    assert np.all(np.abs(tw.grad - gw0 - pw.grad.numpy()) <= 2 * bound(gb.T, xb, gw0))


def test_operands_round_to_nearest_even_as_torch(torch):
    # 1 + 2^-8 is halfway between 1 and 1 + 2^-7 (even: 1); 1 + 3 2^-8 halfway between
    # 1 + 2^-7 and 1 + 2^-6 (even: 1 + 2^-6); just above a tie rounds up.
    x = np.array([[1 + 2**-8], [1 + 3 * 2**-8], [1 + 2**-8 + 2**-20], [-(1 + 2**-8)], [3.0e38]],
                 dtype=np.float32)
    w = np.ones((1, 1), dtype=np.float32)
    y = F.linear_bf16(Tensor(x), Tensor(w)).data
    expect = torch.from_numpy(x).bfloat16().float().numpy()
    np.testing.assert_array_equal(y, expect)
    np.testing.assert_array_equal(expect[:4, 0], [1.0, 1 + 2**-6, 1 + 2**-7, -1.0])


@pytest.mark.parametrize("activation,theirs", [
    ("relu", lambda t, z: t.relu(z)),
    ("gelu_tanh", lambda t, z: t.nn.functional.gelu(z, approximate="tanh")),
])
def test_linear_bf16_with_activation_matches_torch_on_rounded_operands(torch, rng, activation, theirs):
    M, K, N = 37, 70, 90
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32) * 0.2
    b = rng.standard_normal(N).astype(np.float32)
    g = rng.standard_normal((M, N)).astype(np.float32)
    tx, tw, tb = (Tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.linear_bf16(tx, tw, tb, activation)
    y.backward(g)
    px = torch.tensor(bf16(torch, x).astype(np.float32), requires_grad=True)
    pw = torch.tensor(bf16(torch, w).astype(np.float32), requires_grad=True)
    pb = torch.tensor(b, requires_grad=True)
    py = theirs(torch, torch.nn.functional.linear(px, pw, pb))
    py.backward(torch.tensor(g))
    # the activations' slopes are at most ~1.13; the backward GEMMs round grad * act' to bf16,
    # a relative 2^-8 per element on both sides of the comparison
    np.testing.assert_allclose(y.data, py.detach().numpy(), rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(tb.grad, pb.grad.numpy(), rtol=1e-5, atol=1e-4)
    for ours, ref, scale in ((tx.grad, px.grad, np.abs(g) @ np.abs(w)),
                             (tw.grad, pw.grad, np.abs(g).T @ np.abs(x))):
        assert np.all(np.abs(ours - ref.numpy()) <= 2**-7 * scale + 1e-5)


def test_same_bits_at_any_thread_count(rng):
    x = rng.standard_normal((300, 96)).astype(np.float32)
    w = rng.standard_normal((130, 96)).astype(np.float32)
    g = rng.standard_normal((300, 130)).astype(np.float32)
    before = seqlab.get_num_threads()
    runs = []
    try:
        for n in (1, 2):
            seqlab.set_num_threads(n)
            tx, tw = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
            y = F.linear_bf16(tx, tw)
            y.backward(g)
            runs.append((y.data, tx.grad, tw.grad))
    finally:
        seqlab.set_num_threads(before)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_gemm_precision_switches_linear_and_its_backward(rng):
    x = rng.standard_normal((9, 20)).astype(np.float32) * 1.001
    w = rng.standard_normal((11, 20)).astype(np.float32)
    g = rng.standard_normal((9, 11)).astype(np.float32)
    assert F.get_gemm_precision() == "fp32"
    tx, tw = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    with F.gemm_precision("bf16"):
        assert F.get_gemm_precision() == "bf16"
        with F.gemm_precision("fp32"):
            fp32 = F.linear(x, tw).data
        y = F.linear(tx, tw)
    assert F.get_gemm_precision() == "fp32"
    y.backward(g)  # recorded inside: bf16 GEMMs, run outside
    ux, uw = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    ref = F.linear_bf16(ux, uw)
    ref.backward(g)
    np.testing.assert_array_equal(y.data, ref.data)
    np.testing.assert_array_equal(tx.grad, ux.grad)
    np.testing.assert_array_equal(tw.grad, uw.grad)
    np.testing.assert_array_equal(fp32, F.linear(x, tw).data)
    assert not np.array_equal(fp32, y.data)  # the rounding shows
    with pytest.raises(ValueError, match="precision: expected one of"):
        with F.gemm_precision("fp16"):
            pass
    with pytest.raises(ValueError, match="precision: expected one of"):
        F.linear_activation(x, tw, None, "none", precision="bf8")


def test_linear_bf16_bad_shapes_are_named(rng):
    with pytest.raises(ValueError, match="input: expected last dimension 4"):
        F.linear_bf16(np.zeros((3, 5), np.float32), Tensor(np.zeros((2, 4), np.float32)))
    with pytest.raises(ValueError, match="bias"):
        F.linear_bf16(np.zeros((3, 4), np.float32), Tensor(np.zeros((2, 4), np.float32)),
                      Tensor(np.zeros(3, np.float32)))


def test_empty_and_zero_width(rng):
    w = Tensor(rng.standard_normal((5, 0)).astype(np.float32), requires_grad=True)
    x = Tensor(np.zeros((3, 0), np.float32), requires_grad=True)
    b = Tensor(np.arange(5, dtype=np.float32))
    y = F.linear_bf16(x, w, b)
    np.testing.assert_array_equal(y.data, np.broadcast_to(np.arange(5, dtype=np.float32), (3, 5)))
    y.backward(np.ones((3, 5), np.float32))
    assert x.grad.shape == (3, 0) and w.grad.shape == (5, 0)
    assert F.linear_bf16(np.zeros((0, 4), np.float32), Tensor(np.ones((2, 4), np.float32))).shape == (0, 2)


def test_bf16_gemm_engine_is_named_and_fits_the_cpu():
    engine = F.bf16_gemm_engine()
    assert engine in ("amx", "avx512_bf16")
    if engine == "amx":
        features = seqlab.cpu_info()["features"]
        assert features["amx_tile"] and features["amx_bf16"]


# Runs linear_bf16 forward and backward on the arrays of argv[1] at 1 and 2 threads and
# saves the results with the engine's name to argv[2].
_ENGINE_RUN = """
import sys
import numpy as np
import seqlab
from seqlab import functional as F
from seqlab.autograd import Tensor
a = np.load(sys.argv[1])
out = {"engine": np.array(F.bf16_gemm_engine())}
for n in (1, 2):
    seqlab.set_num_threads(n)
    tx, tw, tb = Tensor(a["x"], requires_grad=True), Tensor(a["w"], requires_grad=True), Tensor(a["b"])
    y = F.linear_bf16(tx, tw, tb)
    y.backward(a["g"])
    out.update({f"y{n}": y.data, f"gx{n}": tx.grad, f"gw{n}": tw.grad})
np.savez(sys.argv[2], **out)
"""


@pytest.mark.parametrize("amx", ["1", "0"])
def test_each_engine_matches_the_rounded_reference_at_1_and_2_threads(torch, rng, tmp_path, amx):
    # SEQLAB_BF16_AMX=0 (read once per process) keeps the vdpbf16ps tiles where AMX exists
    M, K, N = 150, 200, 130
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    g = rng.standard_normal((M, N)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x, w=w, b=b, g=g)
    env = {**os.environ, "SEQLAB_BF16_AMX": amx,
           "PYTHONPATH": os.pathsep.join(p for p in (str(Path(seqlab.__file__).resolve().parents[1]),
                                                     os.environ.get("PYTHONPATH")) if p)}
    subprocess.run([sys.executable, "-c", _ENGINE_RUN, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                   env=env, check=True, timeout=300)
    out = np.load(tmp_path / "out.npz")
    if amx == "0":
        assert str(out["engine"]) == "avx512_bf16"
    else:
        assert str(out["engine"]) == F.bf16_gemm_engine()
    xb, wb, gb = bf16(torch, x), bf16(torch, w), bf16(torch, g)
    assert np.all(np.abs(out["y1"] - (xb @ wb.T + b)) <= bound(xb, wb.T, b))
    assert np.all(np.abs(out["gx1"] - gb @ wb) <= bound(gb, wb))
    assert np.all(np.abs(out["gw1"] - gb.T @ xb) <= bound(gb.T, xb))
    for name in ("y", "gx", "gw"):  # the same bits at either thread count
        np.testing.assert_array_equal(out[f"{name}1"], out[f"{name}2"])
