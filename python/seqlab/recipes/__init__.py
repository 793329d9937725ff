"""One-line recipes: whole trainings with evaluation and a report."""

from .code_lm import CodeLM, code_lm
from .demo import DemoResult, sequence_demo
from .forecast import forecaster
from .loading import load
from .poetry import PoetryAutoencoder, poetry_autoencoder
from .vectors import VectorPredictor, vector_predictor

__all__ = [
    "CodeLM", "DemoResult", "PoetryAutoencoder", "VectorPredictor", "code_lm", "forecaster", "load",
    "poetry_autoencoder",
    "sequence_demo", "vector_predictor",
]
