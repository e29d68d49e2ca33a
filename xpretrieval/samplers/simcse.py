"""Unsupervised SimCSE (Gao, Yao and Chen, EMNLP 2021, "SimCSE: Simple Contrastive Learning
of Sentence Embeddings"): a text and itself make a positive pair, the two encodings differ
only by dropout, and the batch's other texts are the negatives."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.core.errors import DataError
from xpretrieval.data.collection import Collection
from xpretrieval.data.records import PositiveRecord, Text
from xpretrieval.samplers.base import Sampler, shuffled_epochs

QUERY_PREFIX = "query:"  # query ids are kept apart from document ids that may be equal


@register("sampler", "simcse")
@dataclass
class SimCSESampler(Sampler):
    """Records (text, the same text) over the collection's documents (and queries when
    `queries`), each text once per epoch in a fresh order. Train with InfoNCE's in-batch
    negatives, dropout on, and the same maximum length and prompt on both sides (the
    experiment preset sets them), so that dropout is the only difference between the two."""

    record: ClassVar[type] = PositiveRecord

    queries: bool = False  # also draw the collection's queries
    min_length: int = 1  # texts with fewer characters (after stripping) are skipped

    def __post_init__(self) -> None:
        check_range("min_length", self.min_length, at_least=1)

    def texts(self, collection: Collection) -> list[Text]:
        """The texts drawn from, in collection order."""
        texts = [Text(doc_id, text.strip()) for doc_id, text in collection.documents.items()]
        if self.queries:
            texts += [
                Text(QUERY_PREFIX + q, text.strip()) for q, text in collection.queries.items()
            ]
        kept = [text for text in texts if len(text.text) >= self.min_length]
        if len(kept) < 2:
            raise DataError(
                f"{collection.name}: SimCSE needs at least 2 texts of {self.min_length}+ "
                f"characters (in-batch negatives), found {len(kept)}"
            )
        return kept

    def epoch_size(self, collection: Collection) -> int:
        return len(self.texts(collection))

    def records(self, collection: Collection, seed: int) -> Iterator[PositiveRecord]:
        for text in shuffled_epochs(self.texts(collection), random.Random(seed)):
            yield PositiveRecord(text, text)
