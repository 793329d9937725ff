"""One-line recipes: whole trainings with evaluation and a report."""

from .demo import DemoResult, sequence_demo
from .loading import load
from .poetry import PoetryAutoencoder, poetry_autoencoder

__all__ = ["DemoResult", "PoetryAutoencoder", "load", "poetry_autoencoder", "sequence_demo"]
