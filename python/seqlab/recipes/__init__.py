"""One-line recipes: whole trainings with evaluation and a report."""

from .demo import DemoResult, sequence_demo
from .forecast import forecaster
from .loading import load
from .poetry import PoetryAutoencoder, poetry_autoencoder
from .vectors import VectorPredictor, vector_predictor

__all__ = [
    "DemoResult", "PoetryAutoencoder", "VectorPredictor", "forecaster", "load", "poetry_autoencoder",
    "sequence_demo", "vector_predictor",
]
