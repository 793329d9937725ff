"""Dense kernels under the thread pool: same results at 1 and 2 threads, and resizing the
pool between parallel kernels is safe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import seqlab
from seqlab import _core
from seqlab import functional as F


def _run_all(rng_seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(rng_seed)
    x = rng.standard_normal((600, 130)).astype(np.float32)
    idx = rng.integers(0, 40, size=5000).astype(np.int64)
    g = rng.standard_normal((5000, 130)).astype(np.float32)
    gw = np.zeros((40, 130), np.float32)
    _core.embedding_backward(g, idx, gw, 3)
    grads = [rng.standard_normal(n).astype(np.float32) for n in (70000, 33)]
    norm = _core.clip_grad_norm(grads, 1.0, 2.0)
    lin_gb = np.zeros(130, np.float32)
    _core.linear_backward(g[:600], x, np.ones((130, 130), np.float32), None, lin_gb, False)
    # the fused linear + GELU kernel splits rows over the pool (and backward its GEMMs)
    w1 = (rng.standard_normal((300, 130)) / 12).astype(np.float32)
    b1 = rng.standard_normal(300).astype(np.float32)
    sx, sw, sb = seqlab.tensor(x, requires_grad=True), seqlab.nn.Parameter(w1), seqlab.nn.Parameter(b1)
    y = F.linear_activation(sx, sw, sb, "gelu_tanh")
    y.backward(np.ones_like(y.data))
    return [F.softmax(x).data, F.gelu(x).data, gw, np.float32(norm), grads[0], lin_gb, y.data, sx.grad,
            sw.grad, sb.grad]


def test_results_do_not_depend_on_thread_count():
    before = seqlab.get_num_threads()
    try:
        seqlab.set_num_threads(1)
        one = _run_all(7)
        seqlab.set_num_threads(2)
        two = _run_all(7)
    finally:
        seqlab.set_num_threads(before)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


def test_linear_backward_parts_in_one_region():
    # The code LM's shapes (M = 16 x 128 rows): the row parts of dx = g w and dw += g^T x
    # (db summed with dw's parts) are claimed in one parallel region. The same bits at 1, 2
    # and 3 threads here, and the values of float64 products (dw added to what it held).
    rng = np.random.default_rng(11)
    for k, n in ((128, 384), (512, 128)):
        x = rng.standard_normal((2048, k)).astype(np.float32)
        w = (rng.standard_normal((n, k)) / 16).astype(np.float32)
        g = rng.standard_normal((2048, n)).astype(np.float32)
        dw0 = rng.standard_normal((n, k)).astype(np.float32)
        results = []
        before = seqlab.get_num_threads()
        try:
            for threads in (1, 2, 3):
                seqlab.set_num_threads(threads)
                dw, db = dw0.copy(), np.zeros(n, np.float32)
                dx = _core.linear_backward(g, x, w, dw, db, True)
                results.append((dx, dw, db))
        finally:
            seqlab.set_num_threads(before)
        for later in results[1:]:
            for a, b in zip(results[0], later, strict=True):
                np.testing.assert_array_equal(a, b)
        dx, dw, db = results[0]
        g64 = g.astype(np.float64)
        np.testing.assert_allclose(dx, g64 @ w, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(dw, dw0 + g64.T @ x, rtol=1e-4, atol=1e-2)
        np.testing.assert_allclose(db, g64.sum(0), rtol=1e-4, atol=1e-3)


RESIZE_SCRIPT = """
import time
import numpy as np
import seqlab
p = [seqlab.nn.Parameter(np.ones(1_000_000, np.float32))]
opt = seqlab.optim.Adam(p, lr=0.1)
p[0].grad = np.ones(1_000_000, np.float32)
for _ in range(5):
    seqlab.set_num_threads(2)
    opt.step()
    seqlab.set_num_threads(1)
    seqlab.set_num_threads(2)
    time.sleep(0.02)  # the new worker starts before the next parallel kernel
    opt.step()
print("ok")
"""


def test_resizing_the_pool_between_parallel_kernels_is_safe():
    python_dir = Path(seqlab.__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", RESIZE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(python_dir)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
