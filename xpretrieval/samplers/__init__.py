"""Samplers turn a collection into a stream of typed training records, independent of models."""

from xpretrieval.samplers.base import Sampler
from xpretrieval.samplers.batchwise import BatchwiseSampler
from xpretrieval.samplers.negatives import HardNegatives
from xpretrieval.samplers.pairwise import PairwiseSampler
from xpretrieval.samplers.random_span import RandomSpanSampler
from xpretrieval.samplers.records import BatchwiseRecord, PairwiseRecord, Text

__all__ = [
    "BatchwiseRecord",
    "BatchwiseSampler",
    "HardNegatives",
    "PairwiseRecord",
    "PairwiseSampler",
    "RandomSpanSampler",
    "Sampler",
    "Text",
]
