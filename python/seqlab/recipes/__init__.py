"""One-line recipes: whole trainings with evaluation and a report."""

from .demo import DemoResult, sequence_demo
from .forecast import forecaster
from .loading import load
from .poetry import PoetryAutoencoder, poetry_autoencoder

__all__ = ["DemoResult", "PoetryAutoencoder", "forecaster", "load", "poetry_autoencoder", "sequence_demo"]
