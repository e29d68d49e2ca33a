"""Batchwise records: a query with one relevant document and n non-relevant ones, for
listwise losses (InfoNCE over several negatives per query)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.data.collection import Collection
from xpretrieval.data.records import BatchwiseRecord
from xpretrieval.samplers.pairwise import PairwiseSampler


@register("sampler", "batchwise")
@dataclass
class BatchwiseSampler(PairwiseSampler):
    """As the pairwise sampler, with `negatives` negatives per record (drawn independently,
    so a small pool may repeat one)."""

    record: ClassVar[type] = BatchwiseRecord

    negatives: int = 7

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("negatives", self.negatives, at_least=1)

    def records(self, collection: Collection, seed: int) -> Iterator[BatchwiseRecord]:
        for draw in self.examples(collection, seed, self.negatives):
            yield BatchwiseRecord(draw.query, draw.positive, draw.negatives)
