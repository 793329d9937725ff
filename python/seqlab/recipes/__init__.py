"""One-line recipes: whole trainings with evaluation and a report."""

from .code_lm import CodeLM, code_lm
from .code_optimizer import CodeOptimizer, code_optimizer
from .demo import DemoResult, sequence_demo
from .forecast import forecaster
from .loading import load
from .poetry import PoetryAutoencoder, poetry_autoencoder
from .vectors import VectorPredictor, vector_predictor

__all__ = [
    "CodeLM", "CodeOptimizer", "DemoResult", "PoetryAutoencoder", "VectorPredictor", "code_lm",
    "code_optimizer", "forecaster", "load", "poetry_autoencoder", "sequence_demo", "vector_predictor",
]
