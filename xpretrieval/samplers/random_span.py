"""Random spans (coCondenser; Gao and Callan, ACL 2022; xpmir's `RandomSpanSampler`): two
spans of one document form a positive pair, and the spans of the other documents of the
batch are its negatives. No relevance judgements are needed, only documents."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from xpretrieval.core.config import register
from xpretrieval.core.errors import DataError
from xpretrieval.data.collection import Collection
from xpretrieval.data.records import PositiveRecord, Text
from xpretrieval.samplers.base import Sampler, shuffled_epochs

logger = logging.getLogger(__name__)


@register("sampler", "random_span")
@dataclass
class RandomSpanSampler(Sampler):
    """Records (span, other span of the same document); in-batch negatives only."""

    record: ClassVar[type] = PositiveRecord

    max_spansize: int = 256  # characters per span, at most
    min_length: int = 2  # documents with fewer characters give no two spans: skipped

    def __post_init__(self) -> None:
        if self.max_spansize < 1 or self.min_length < 2:
            raise ValueError(
                f"need max_spansize >= 1 and min_length >= 2, got max_spansize="
                f"{self.max_spansize}, min_length={self.min_length}"
            )

    def usable(self, collection: Collection) -> list[str]:
        """Ids of the documents long enough to cut two spans from (the others are counted)."""
        ids = [
            d for d, text in collection.documents.items() if len(text.strip()) >= self.min_length
        ]
        skipped = len(collection.documents) - len(ids)
        if skipped:
            logger.warning(
                "%s: skipped %d documents shorter than %d characters (empty ones included)",
                collection.name,
                skipped,
                self.min_length,
            )
        if not ids:
            raise DataError(f"{collection.name}: no document has {self.min_length} characters")
        return ids

    def epoch_size(self, collection: Collection) -> int:
        return len(self.usable(collection))

    def records(self, collection: Collection, seed: int) -> Iterator[PositiveRecord]:
        rng = random.Random(seed)
        for doc_id in shuffled_epochs(self.usable(collection), rng):
            text = collection.documents[doc_id].strip()
            first, second = self._span(rng, text), self._span(rng, text)
            yield PositiveRecord(Text(doc_id, first), Text(doc_id, second))

    def _span(self, rng: random.Random, text: str) -> str:
        """A random span of 1..max_spansize characters (at most half the text, so that the
        two spans of a pair differ when the text allows)."""
        longest = max(1, min(self.max_spansize, len(text) // 2))
        length = rng.randint(1, longest)
        start = rng.randrange(len(text) - length + 1)
        return text[start : start + length]
