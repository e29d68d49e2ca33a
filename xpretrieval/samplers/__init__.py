"""Samplers turn a collection into a stream of typed training records, independent of models."""

from xpretrieval.samplers.base import Sampler
from xpretrieval.samplers.pairwise import PairwiseSampler
from xpretrieval.samplers.records import PairwiseRecord, Text

__all__ = ["PairwiseRecord", "PairwiseSampler", "Sampler", "Text"]
