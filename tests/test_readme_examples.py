"""The README's Python examples run as written: every ```python block, in order, in one
namespace, in a folder holding small stand-ins for the files they name (poems.json,
ETTh1.csv, chains.npz, my_project/), with the recipes' training budgets cut by overrides."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np
import pytest

import seqlab
from seqlab.data.synthetic_chains import synthetic_chains

README = Path(__file__).resolve().parents[1] / "README.md"
# tiny budgets: the README's calls, with these settings added
BUDGETS = {
    "poetry_autoencoder": {"epochs": 2, "embedding_epochs": 2, "embedding_dim": 16, "hidden_size": 16,
                           "progress": False, "verbose": False},
    "forecaster": {"epochs": 2, "preset": "tiny", "verbose": False},
    "vector_predictor": {"epochs": 2, "hidden_size": 16, "progress": False, "verbose": False},
    "code_lm": {"preset": "tiny", "epochs": 1, "progress": False, "verbose": False, "tensorboard": False},
    "code_optimizer": {"preset": "tiny", "epochs": 1, "progress": False, "verbose": False},
}
WORDS = "moon night sea wind rose heart love light dark star sky rain song bird tree river stone".split()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def write_stand_ins(folder: Path) -> None:
    rng = np.random.default_rng(0)
    poems = [{"title": f"p{i}", "author": f"a{i % 3}",
              "lines": [" ".join(WORDS[(s + j) % len(WORDS)] for j in range(6))
                        for s in rng.integers(len(WORDS), size=3)]} for i in range(40)]
    (folder / "poems.json").write_text(json.dumps(poems))
    rows = ["date,HUFL,OT"] + [
        f"2016-07-{1 + i // 24:02d} {i % 24:02d}:00:00,{np.cos(i / 7):.4f},"
        f"{np.sin(2 * np.pi * i / 24) + 0.01 * rng.standard_normal():.4f}"
        for i in range(600)
    ]
    (folder / "ETTh1.csv").write_text("\n".join(rows) + "\n")
    chains = synthetic_chains(chains=40, length=120, dim=8, rule="rotation", seed=0)
    np.savez(folder / "chains.npz", vectors=chains.vectors, chain_offsets=chains.offsets)
    project = folder / "my_project"
    project.mkdir()
    for i in range(12):
        (project / f"unit{i}.c").write_text(
            "#include <stdio.h>\n\n" + "".join(
                f"static int f{i}_{j}(int x)\n{{\n    if (x > {j}) {{\n        return x * {j + 1};\n    }}\n"
                f"    return x - {i};\n}}\n\n" for j in range(20)
            ) + "int main(void)\n{\n    printf(\"%d\\n\", f0_0(3));\n    return 0;\n}\n"
        )


def test_readme_has_the_recipe_examples() -> None:
    text = "\n".join(python_blocks())
    calls = ("seqlab.poetry_autoencoder(", "seqlab.forecaster(", "seqlab.vector_predictor(",
             "seqlab.code_lm(", "seqlab.code_optimizer(", "seqlab.load(")
    for call in calls:
        assert call in text


@pytest.mark.slow
def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gensim")
    pytest.importorskip("matplotlib")
    write_stand_ins(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name, budget in BUDGETS.items():
        monkeypatch.setattr(seqlab, name, functools.partial(getattr(seqlab.recipes, name), **budget))
    namespace: dict[str, object] = {}
    for i, block in enumerate(python_blocks()):
        if "import torch" in block:
            pytest.importorskip("torch")
        exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
    assert (tmp_path / "runs" / "etth1" / "training_report.md").is_file()
