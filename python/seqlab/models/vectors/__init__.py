"""The next-vector predictor: config, model, loss, baselines, evaluation, streaming."""

from .config import VectorPredictorConfig
from .loss import next_vector_loss
from .model import NextVectorModel
from .stream import VectorStream

__all__ = ["NextVectorModel", "VectorPredictorConfig", "VectorStream", "next_vector_loss"]
