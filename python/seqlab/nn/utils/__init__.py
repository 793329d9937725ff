"""Parameter utilities: flat parameter/gradient buffers and global gradient-norm clipping."""

from .clip_grad import clip_grad_norm_
from .flat_buffer import FlatParameters, flatten_parameters

__all__ = ["FlatParameters", "clip_grad_norm_", "flatten_parameters"]
