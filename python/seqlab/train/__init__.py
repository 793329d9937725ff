"""Training: the Trainer and its callbacks (each usable alone)."""

from .callback import Callback
from .checkpoint import Checkpoint, latest_valid_checkpoint, load_checkpoint
from .curriculum import Curriculum, Phase
from .early_stopping import EarlyStopping
from .grad_monitor import GradientMonitor, GradientWarning
from .nan_guard import NanGuard, TrainingDivergedError
from .schedules import LRSchedule, ReduceLROnPlateau, StepDecay, WarmupSchedule
from .tensorboard import TensorBoardLogger, read_scalars
from .throughput import Throughput
from .trainer import Trainer

__all__ = [
    "Callback",
    "Checkpoint",
    "Curriculum",
    "EarlyStopping",
    "GradientMonitor",
    "GradientWarning",
    "LRSchedule",
    "NanGuard",
    "Phase",
    "ReduceLROnPlateau",
    "StepDecay",
    "TensorBoardLogger",
    "Throughput",
    "Trainer",
    "TrainingDivergedError",
    "WarmupSchedule",
    "latest_valid_checkpoint",
    "load_checkpoint",
    "read_scalars",
]
