"""Samplers turn a collection into a stream of typed training records, independent of models."""

from xpretrieval.core.config import register_package
from xpretrieval.data.records import (
    BatchwiseRecord,
    DistillationRecord,
    PairwiseRecord,
    PointwiseRecord,
    PositiveRecord,
    Text,
)
from xpretrieval.samplers.base import Sampler
from xpretrieval.samplers.batchwise import BatchwiseSampler
from xpretrieval.samplers.distillation import DistillationSampler
from xpretrieval.samplers.negative_filter import CrossEncoderFilter
from xpretrieval.samplers.negatives import HardNegatives
from xpretrieval.samplers.pairwise import PairwiseSampler
from xpretrieval.samplers.pointwise import PointwiseSampler
from xpretrieval.samplers.random_span import RandomSpanSampler

__all__ = [
    "BatchwiseRecord",
    "BatchwiseSampler",
    "CrossEncoderFilter",
    "DistillationRecord",
    "DistillationSampler",
    "HardNegatives",
    "PairwiseRecord",
    "PairwiseSampler",
    "PointwiseRecord",
    "PointwiseSampler",
    "PositiveRecord",
    "RandomSpanSampler",
    "Sampler",
    "Text",
]

register_package(__name__)  # every module of the package: new components register themselves
