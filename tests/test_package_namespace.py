"""``import seqlab`` stays light, yet lists its recipes and reaches every subpackage as an attribute."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import seqlab

RECIPES = ("poetry_autoencoder", "vector_predictor", "forecaster", "load", "sequence_demo")
SUBPACKAGES = ("data", "train", "report", "models", "tune", "recipes", "serialization")


def test_dir_lists_the_recipes_and_subpackages() -> None:
    names = dir(seqlab)
    for name in RECIPES + SUBPACKAGES + ("nn", "optim", "metrics"):
        assert name in names, name
    assert callable(seqlab.poetry_autoencoder) and seqlab.data.load_poems and seqlab.train.Trainer
    assert seqlab.report.EvaluationSummary and seqlab.tune.search


def test_import_is_light_and_attributes_load_on_use() -> None:
    code = (
        "import sys, seqlab\n"
        f"lazy = {SUBPACKAGES!r}\n"
        "assert not [m for m in lazy if 'seqlab.' + m in sys.modules], sorted(sys.modules)\n"
        "seqlab.data.load_poems; seqlab.report.write_report\n"
        "assert 'seqlab.data' in sys.modules and 'seqlab.report' in sys.modules\n"
        "assert 'matplotlib' not in sys.modules and 'optuna' not in sys.modules\n"
    )
    python = Path(seqlab.__file__).resolve().parents[1]  # the seqlab under test (source or installed)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(python)})
    assert result.returncode == 0, result.stderr
