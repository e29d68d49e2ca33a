"""Pointwise records: (query, document, label), for classification losses and cross-encoders.
Each positive judgement gives a relevant record and a non-relevant one (a negative drawn as
the pairwise sampler draws it), so the labels are balanced."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from xpretrieval.core.config import register
from xpretrieval.data.collection import Collection
from xpretrieval.data.records import PointwiseRecord
from xpretrieval.samplers.pairwise import PairwiseSampler


@register("sampler", "pointwise")
@dataclass
class PointwiseSampler(PairwiseSampler):
    """(query, positive, 1.0) then (query, negative, 0.0) for each positive pair."""

    record: ClassVar[type] = PointwiseRecord

    def epoch_size(self, collection: Collection) -> int:
        return 2 * super().epoch_size(collection)

    def records(self, collection: Collection, seed: int) -> Iterator[PointwiseRecord]:
        for draw in self.examples(collection, seed, 1):
            yield PointwiseRecord(draw.query, draw.positive, 1.0)
            yield PointwiseRecord(draw.query, draw.negatives[0], 0.0)
