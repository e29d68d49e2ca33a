"""Training: the learner's loop, trainer steps, optimisers and hooks."""

from xpretrieval.core.hooks import Hook, TrainState
from xpretrieval.training.learner import Learner
from xpretrieval.training.optim import AdamW, OptimizerConfig
from xpretrieval.training.trainers import BatchwiseTrainer, Trainer

__all__ = [
    "AdamW",
    "BatchwiseTrainer",
    "Hook",
    "Learner",
    "OptimizerConfig",
    "TrainState",
    "Trainer",
]
