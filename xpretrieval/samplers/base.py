"""The base of sampler configs."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from xpretrieval.data.collection import Collection


@dataclass
class Sampler(ABC):
    """Yields training records from a collection, endlessly and deterministically for a seed."""

    record: ClassVar[type]  # the type of the records it yields (data/records.py)

    @abstractmethod
    def records(self, collection: Collection, seed: int) -> Iterator:
        """An endless stream of records, epoch after epoch, each epoch in a fresh order."""

    @abstractmethod
    def epoch_size(self, collection: Collection) -> int:
        """How many records make one pass over the training data."""


T = TypeVar("T")


def shuffled_epochs(items: Sequence[T], rng: random.Random) -> Iterator[T]:
    """`items` endlessly, each epoch in a fresh order drawn from `rng` (which the caller may
    use for its other draws between them)."""
    while True:
        order = list(items)
        rng.shuffle(order)
        yield from order
