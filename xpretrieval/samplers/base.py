"""The base of sampler configs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from xpretrieval.data.collection import Collection


@dataclass
class Sampler(ABC):
    """Yields training records from a collection, endlessly and deterministically for a seed."""

    has_negatives: ClassVar[bool] = True  # records bring negatives of their own
    gives_teacher_scores: ClassVar[bool] = False  # records carry a teacher's scores
    gives_labels: ClassVar[bool] = False  # records carry a relevance label
    pointwise: ClassVar[bool] = False  # one (query, document) per record: trainer=pointwise

    @abstractmethod
    def records(self, collection: Collection, seed: int) -> Iterator:
        """An endless stream of records, epoch after epoch, each epoch in a fresh order."""

    @abstractmethod
    def epoch_size(self, collection: Collection) -> int:
        """How many records make one pass over the training data."""
