"""Kernels from several Python threads at once (the GIL is released inside each kernel).

Four threads running forward and backward passes of the recurrent, attention,
convolution, dense and loss kernels, and top-k search, get bit for bit what the same
work gives run serially; a fifth thread resizing the pool meanwhile breaks nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

import seqlab
from seqlab import functional as F
from seqlab import nn
from seqlab.metrics import topk
from seqlab.models.poetry import SequenceAutoencoder, preset


def _work(seed: int) -> list[np.ndarray]:
    """Forward and backward through many kernels; every output and gradient."""
    seqlab.manual_seed(seed)  # the generator is per thread
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []

    def grads(loss: seqlab.Tensor, *tensors: seqlab.Tensor) -> None:
        loss.backward()
        out.append(loss.data)
        out.extend(t.grad for t in tensors)

    x = seqlab.tensor(rng.standard_normal((5, 23, 12)), requires_grad=True)
    lengths = np.array([23, 17, 23, 1, 9])
    for layer in (nn.LSTM(12, 20, num_layers=2, bidirectional=True), nn.GRU(12, 33), nn.RNN(12, 7)):
        y, _ = layer(x, lengths=lengths)
        grads((y * y).mean(), x, *layer.parameters())
        x.grad = None
    mha = nn.MultiheadAttention(12, 3)
    for t in (9, 300):  # the plain and the tiled (flash) attention paths
        q = seqlab.tensor(rng.standard_normal((2, t, 12)), requires_grad=True)
        y, _ = mha(q, q, q, need_weights=False, is_causal=True)
        grads((y * y).sum(), q, *mha.parameters())
    conv = nn.CausalConv1d(12, 16, kernel_size=3, dilation=2)
    xc = seqlab.tensor(rng.standard_normal((3, 40, 12)), requires_grad=True)  # (B, T, C)
    grads(F.gelu(conv(xc)).mean(), xc, *conv.parameters())
    w = nn.Parameter(rng.standard_normal((64, 12)).astype(np.float32) / 4)
    xd = seqlab.tensor(rng.standard_normal((50, 12)), requires_grad=True)
    h = F.layer_norm(F.linear_activation(xd, w, None, "gelu_tanh"), (64,))
    grads(F.cross_entropy(h, rng.integers(0, 64, 50)), xd, w)
    config = preset("tiny", attention=True, num_heads=2)
    model = SequenceAutoencoder(config, 8)
    xe = seqlab.tensor(rng.standard_normal((4, 11, 8)))
    pred, codes = model(xe, np.array([11, 5, 8, 2]))
    grads(F.cosine_mse_loss(pred, xe, np.array([11, 5, 8, 2])), *model.parameters())
    out.append(codes.data)
    bank = rng.standard_normal((3000, 32)).astype(np.float32)
    for q in (1, 40):  # the few-queries and many-queries paths
        scores, ids = topk(rng.standard_normal((q, 32)).astype(np.float32), bank, 7)
        out += [scores, ids]
    return out


def _in_threads(jobs: list[Callable[[], object]], timeout: float = 300.0) -> list[object]:
    results: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = jobs[i]()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]
    return results


def _assert_same(a: list[np.ndarray], b: list[np.ndarray], exact: bool = True) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        if exact:
            np.testing.assert_array_equal(x, y, err_msg=f"output {i}")
        else:
            np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-5, err_msg=f"output {i}")


def _while_resizing(jobs: list[Callable[[], object]]) -> tuple[list[object], int]:
    """Runs ``jobs`` in threads beside one that keeps resizing the pool (1, 3, 2 threads, ...)
    until the first job ends; returns the jobs' results and how many resizes were made. The
    pool's size is restored afterwards."""
    before = seqlab.get_num_threads()
    stop = threading.Event()
    changes = 0

    def resize() -> None:
        nonlocal changes
        while not stop.is_set():
            for n in (1, 3, 2):
                seqlab.set_num_threads(n)
                changes += 1

    def first() -> object:
        try:
            return jobs[0]()
        finally:
            stop.set()

    try:
        results = _in_threads([first, *jobs[1:], resize])
    finally:
        stop.set()
        seqlab.set_num_threads(before)
    return results[: len(jobs)], changes


def test_four_threads_match_serial_calls() -> None:
    serial = [_work(seed) for seed in range(4)]
    for _ in range(2):
        together = _in_threads([lambda s=seed: _work(s) for seed in range(4)])
        for seed in range(4):
            _assert_same(together[seed], serial[seed])


def test_thread_count_changes_during_other_threads_work_are_safe() -> None:
    serial = [_work(seed) for seed in range(3)]
    results, changes = _while_resizing([lambda s=seed: _work(s) for seed in range(3)])
    assert changes > 3
    for seed in range(3):
        # the pool size decides how work is split, so the last bits may differ
        _assert_same(results[seed], serial[seed], exact=False)


def test_fused_bf16_output_layer_while_the_pool_is_resized() -> None:
    """The fused bf16 output layer sizes its per-thread workspace from the pool's size when
    it starts; a pool grown by another thread meanwhile must not run past it (ASan checks
    the memory in the sanitizer run) nor change the values."""
    if not F.bf16_gemm_available() or F.bf16_gemm_engine() != "amx":
        pytest.skip("the fused bf16 op runs on AMX tiles; this process has none")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((700, 32)).astype(np.float32)
    w = (rng.standard_normal((900, 32)) * 0.5).astype(np.float32)
    t = rng.integers(0, 900, 700)

    def fused() -> list[np.ndarray]:
        xs = seqlab.tensor(x, requires_grad=True)
        ws = seqlab.tensor(w, requires_grad=True)
        with F.gemm_precision("bf16"):
            loss = F.linear_cross_entropy(xs, ws, t)
            loss.backward()
        return [loss.data, xs.grad, ws.grad]

    before = seqlab.get_num_threads()
    seqlab.set_num_threads(1)
    try:
        serial = fused()
    finally:
        seqlab.set_num_threads(before)
    runs, changes = _while_resizing([lambda: [fused() for _ in range(15)]] * 2)
    assert changes > 3
    for run in runs[:2]:
        assert isinstance(run, list)
        for result in run:
            _assert_same(result, serial, exact=False)
