"""Training losses: pure functions of scores (and representations, for regularisers)."""

from xpretrieval.core.config import register_package
from xpretrieval.losses.base import BatchScores, Loss
from xpretrieval.losses.distillation import KLDistillation, MarginMSE
from xpretrieval.losses.infonce import InfoNCE
from xpretrieval.losses.matryoshka import Matryoshka
from xpretrieval.losses.pairwise import Hinge, Logistic, PairCrossEntropy, Triplet
from xpretrieval.losses.pointwise import BinaryCrossEntropy, MeanSquaredError
from xpretrieval.losses.regularizers import L1, Flops, Regularizer, Warmup

__all__ = [
    "L1",
    "BatchScores",
    "BinaryCrossEntropy",
    "Flops",
    "Hinge",
    "InfoNCE",
    "KLDistillation",
    "Logistic",
    "Loss",
    "MarginMSE",
    "Matryoshka",
    "MeanSquaredError",
    "PairCrossEntropy",
    "Regularizer",
    "Triplet",
    "Warmup",
]

register_package(__name__)  # every module of the package: new components register themselves
