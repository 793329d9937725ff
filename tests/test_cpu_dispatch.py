"""Runtime CPU dispatch: cpu_info(), SEQLAB_ARCH forcing and refusals, PyTorch parity and
same bits at every level the machine has, and the built module's shared inline code
(compiled once for x86-64-v2, whatever level calls it)."""

from __future__ import annotations

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

ROOT = Path(__file__).resolve().parents[1]
INFO = seqlab.cpu_info()
DISPATCHED = INFO["build"] == "dispatch"
needs_dispatch = pytest.mark.skipif(not DISPATCHED, reason="a native build (SEQLAB_NATIVE=ON) has one level")
PRESENT = {name for name, present in INFO["features"].items() if present}
# The levels this CPU can run (the forced ones of the subprocesses below).
RUNNABLE = [level for level in INFO["levels"] if DISPATCHED and select_level(level, PRESENT) == level]

V2 = ["sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16"]
V3 = V2 + ["avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "lzcnt", "movbe"]
V4 = V3 + ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]
LEVELS = ["x86-64-v2", "x86-64-v3", "x86-64-v4", "x86-64-v4-bf16"]


def _run_python(args: list[str], arch: str | None, **kwargs) -> subprocess.CompletedProcess:
    """Runs this Python on the seqlab under test (in place or installed), keeping the
    environment (the sanitizer run's LD_PRELOAD), with SEQLAB_ARCH=arch (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "SEQLAB_ARCH"}
    env["PYTHONPATH"] = str(Path(seqlab.__file__).resolve().parents[1])
    if arch is not None:
        env["SEQLAB_ARCH"] = arch
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, **kwargs)


def test_cpu_info_reports_the_features_the_levels_and_the_choice() -> None:
    assert set(INFO) == {"features", "levels", "level", "forced", "build", "blas_kernel_family"}
    for feature in ["sse4_2", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16",
                    "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"]:
        assert isinstance(INFO["features"][feature], bool), feature
    assert INFO["build"] in ("dispatch", "native")
    assert INFO["level"] in INFO["levels"]
    assert INFO["forced"] == bool(os.environ.get("SEQLAB_ARCH"))
    assert INFO["blas_kernel_family"] == seqlab._core.blas_kernel_family()
    assert "cpu_info" in dir(seqlab) and "cpu_info" in seqlab.__all__
    if DISPATCHED:
        assert INFO["levels"] == LEVELS
        if not INFO["forced"]:  # the best level this CPU has
            assert INFO["level"] == RUNNABLE[-1]
    else:
        assert INFO["levels"] == ["native"] and INFO["level"] == "native"


def test_cpu_features_agree_with_the_kernels_cpu_flags() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo")
    flags = set(re.search(r"^flags\s*:(.*)$", cpuinfo.read_text(), re.M).group(1).split())
    # /proc/cpuinfo's names where they differ; the kernel also checks the OS saves the registers
    names = {"sse3": "pni", "lzcnt": "abm"}
    for feature, present in INFO["features"].items():
        assert present == (names.get(feature, feature) in flags), feature


def test_select_level_picks_the_best_level_a_cpu_has() -> None:
    assert select_level("", V2, LEVELS) == "x86-64-v2"
    assert select_level("", V3 + ["avx512f"], LEVELS) == "x86-64-v3"
    assert select_level("", V4, LEVELS) == "x86-64-v4"
    assert select_level("", V4 + ["avx512_bf16"], LEVELS) == "x86-64-v4-bf16"
    assert select_level("", V3 + ["avx512_bf16"], LEVELS) == "x86-64-v3"
    assert select_level("x86-64-v4", V4 + ["avx512_bf16"], LEVELS) == "x86-64-v4"
    assert select_level("x86-64-v2", V4, LEVELS) == "x86-64-v2"
    assert select_level("x86-64-v3", V4, LEVELS) == "x86-64-v3"


def test_a_level_the_cpu_lacks_is_refused_naming_it_and_the_cpus_best() -> None:
    with pytest.raises(RuntimeError, match=r"SEQLAB_ARCH=x86-64-v4 .* this CPU lacks \(no avx512bw\); "
                                           r"the CPU's best level is x86-64-v3"):
        select_level("x86-64-v4", [f for f in V4 if f != "avx512bw"], LEVELS)
    with pytest.raises(RuntimeError, match=r"x86-64-v3 .*lacks \(no avx2, fma\).* best level is x86-64-v2"):
        select_level("x86-64-v3", [f for f in V3 if f not in ("avx2", "fma")], LEVELS)
    with pytest.raises(RuntimeError, match=r"CPU lacks sse4_2, which the lowest level, x86-64-v2, needs"):
        select_level("", [f for f in V2 if f != "sse4_2"], LEVELS)


def test_an_unknown_level_is_refused_listing_the_valid_values() -> None:
    with pytest.raises(RuntimeError, match=r"SEQLAB_ARCH=avx2 is not a level of this build; valid values: "
                                           r"x86-64-v2, x86-64-v3, x86-64-v4, x86-64-v4-bf16$"):
        select_level("avx2", V4, LEVELS)


@needs_dispatch
def test_an_unknown_seqlab_arch_fails_the_import() -> None:
    out = _run_python(["-c", "import seqlab"], "x86-64-v5")
    assert out.returncode != 0
    assert re.search(r"ImportError: SEQLAB_ARCH=x86-64-v5 is not a level of this build; valid values: "
                     r"x86-64-v2, x86-64-v3, x86-64-v4, x86-64-v4-bf16", out.stderr), out.stderr


# One GRU training step, an attention forward/backward and a top-k search, seeded, on 2
# threads: the level, then the numbers (.npz at argv[1]).
PROBE = r"""
import json, sys
import numpy as np
import seqlab
from seqlab import nn, optim

seqlab.manual_seed(0)
seqlab.set_num_threads(2)
rng = np.random.default_rng(3)
gru = nn.GRU(20, 24, num_layers=2, bidirectional=True)
head = nn.Linear(48, 5)
params = list(gru.parameters()) + list(head.parameters())
opt = optim.Adam(params, lr=1e-2)
x = seqlab.tensor(rng.standard_normal((6, 11, 20)).astype(np.float32))
loss = (head(gru(x)[0]) ** 2).mean()
opt.zero_grad()
loss.backward()
opt.step()
q, k, v = (seqlab.tensor(rng.standard_normal((2, 3, 40, 16)).astype(np.float32), requires_grad=True)
           for _ in range(3))
o = seqlab.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
(o * o).sum().backward()
bank = rng.standard_normal((5000, 40)).astype(np.float32)
scores, idx = seqlab.metrics.topk(rng.standard_normal((30, 40)).astype(np.float32), bank, 7)
few_scores, few_idx = seqlab.metrics.topk(rng.standard_normal((4, 40)).astype(np.float32), bank, 7)
out = {f"param.{i}": p.numpy() for i, p in enumerate(params)}
if seqlab.functional.bf16_gemm_available():
    xb, wb = (seqlab.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
              for s in ((70, 33), (45, 33)))
    yb = seqlab.functional.linear_bf16(xb, wb)
    (yb * yb).sum().backward()
    out.update(bf16_y=yb.numpy(), bf16_dx=xb.grad, bf16_dw=wb.grad)
np.savez(sys.argv[1], loss=np.float32(loss.item()), o=o.numpy(), dq=q.grad, dk=k.grad, dv=v.grad,
         scores=scores, idx=idx, few_scores=few_scores, few_idx=few_idx, **out)
print(json.dumps(seqlab.cpu_info()))
"""


@needs_dispatch
@pytest.mark.parametrize("level", LEVELS)
def test_seqlab_arch_forces_the_level_and_a_level_gives_the_same_bits_twice(level, tmp_path) -> None:
    if level not in RUNNABLE:
        pytest.skip(f"this CPU lacks {level}")
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    runs = []
    for i in range(2):
        out = _run_python([str(probe), str(tmp_path / f"run{i}.npz")], level, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        info = json.loads(out.stdout.splitlines()[-1])
        assert info["level"] == level and info["forced"] is True, info
        runs.append(np.load(tmp_path / f"run{i}.npz"))
    first, second = runs
    assert first.files == second.files
    assert ("bf16_y" in first.files) == (level == "x86-64-v4-bf16")
    for name in first.files:
        assert np.isfinite(first[name]).all(), name
        np.testing.assert_array_equal(first[name], second[name], err_msg=f"{name} at {level}")


# The PyTorch-parity tests of the kernels (recurrent, attention, dense/linear, conv,
# decoder, pointer-generator, top-k, losses, layer norm, optimizers).
PARITY_FILES = ["test_recurrent_torch.py", "test_recurrent.py", "test_attention.py", "test_kv_attention.py",
                "test_dense.py", "test_conv1d.py", "test_decoder.py", "test_pointer_generator.py",
                "test_topk.py", "test_losses.py", "test_cross_entropy.py", "test_layer_norm.py",
                "test_optim.py", "test_linear_bf16.py"]


@pytest.mark.slow
@needs_dispatch
@pytest.mark.parametrize("level", LEVELS)
def test_the_parity_suite_passes_at_every_level(level) -> None:
    """The main suite runs at the CPU's best level; here the others, each forced in its own
    pytest process (the bf16 tests skip at levels without bf16 GEMMs)."""
    pytest.importorskip("torch")
    if level not in RUNNABLE:
        pytest.skip(f"this CPU lacks {level}")
    if level == INFO["level"]:
        pytest.skip(f"{level} is the level of this run")
    tests = Path(__file__).resolve().parent
    out = _run_python(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", "-x",
                       *[str(tests / name) for name in PARITY_FILES]], level, cwd=ROOT)
    assert out.returncode == 0, f"parity at {level}:\n{out.stdout[-4000:]}\n{out.stderr[-2000:]}"
    assert re.search(r"\d+ passed", out.stdout), out.stdout[-2000:]


BF16_REFUSED = r"""
import numpy as np
import seqlab
from seqlab import functional as F
from seqlab.models.code_lm import GPT, preset_config
from seqlab.models.code_lm.model import bf16_fallback_message

assert not F.bf16_gemm_available()
try:
    F.linear_bf16(np.ones((2, 3), np.float32), seqlab.tensor(np.ones((4, 3), np.float32)))
except RuntimeError as e:
    print("linear:", e)
try:
    with F.gemm_precision("bf16"):
        pass
except RuntimeError as e:
    print("context:", e)
print("gpt:", GPT(preset_config("tiny", precision="bf16")).gemm_precision)
print("message:", bf16_fallback_message())
"""


@needs_dispatch
def test_bf16_is_refused_clearly_at_levels_without_it(tmp_path) -> None:
    level = "x86-64-v4" if "x86-64-v4" in RUNNABLE else RUNNABLE[-1]
    if level == "x86-64-v4-bf16":
        pytest.skip("no level without bf16 GEMMs runs here")
    out = _run_python(["-c", BF16_REFUSED], level, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    for key in ("linear", "context"):
        assert lines[key].startswith(f"bf16 GEMMs need the x86-64-v4-bf16 kernel level (AVX512_BF16); "
                                     f"the kernels run at {level}"), lines[key]
    assert lines["gpt"] == "fp32"
    assert lines["message"].startswith("precision='bf16': bf16 GEMMs are unavailable (")
    assert lines["message"].endswith("training stays in fp32")
    if "avx512_bf16" in PRESENT:
        assert f"SEQLAB_ARCH={level} forces a level without them" in lines["message"]


# Functions whose name puts them in an AVX2 or AVX-512 level: the v3/v4 namespaces (their
# lambdas, and std:: templates instantiated on them), xsimd's arch-typed instantiations.
LEVEL_CODE = re.compile(r"seqlab::v(3|4|4bf16)::|xsimd::(avx|fma3)")


@needs_dispatch
def test_code_outside_the_levels_uses_no_avx_registers() -> None:
    """Inline code shared by the levels (std::, xtensor, pybind11) is linked once: the
    baseline objects link first, so the copy kept is the x86-64-v2 one."""
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump is not installed (binutils)")
    core = Path(seqlab._core.__file__)
    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", "-C", str(core)], capture_output=True,
                             text=True, check=True).stdout
    function, offenders, level_functions = None, {}, set()
    header = re.compile(r"^[0-9a-f]+ <(.+)>:$")
    wide = re.compile(r"%[yz]mm\d")
    for line in listing.splitlines():
        found = header.match(line)
        if found:
            function = found.group(1)
        elif function is not None and wide.search(line):
            if LEVEL_CODE.search(function):
                level_functions.add(function)
            else:
                offenders.setdefault(function, line.strip())
    # the check sees the symbol table: the v3/v4 kernels are there, using their registers
    assert any("seqlab::v4::" in f for f in level_functions), f"no v4 kernel found in {core}"
    assert not offenders, "AVX registers outside the v3/v4 levels:\n" + "\n".join(
        f"{f}: {insn}" for f, insn in list(offenders.items())[:20])
