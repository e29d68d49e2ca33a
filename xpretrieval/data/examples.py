"""A split's own training examples, as Hub datasets publish them: each row a query with its
positive(s), negatives and perhaps a teacher's scores. Samplers turn them into the same typed
records they draw from qrels (`PairwiseSampler.draws_from`), so a data source never reaches
past the split."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from xpretrieval.data.records import Text


@dataclass(frozen=True)
class Example:
    """One training row: a query, its relevant documents, its non-relevant ones and, when the
    dataset has them, a teacher's scores (the single positive's, then each negative's)."""

    query: Text
    positives: tuple[Text, ...]
    negatives: tuple[Text, ...]
    scores: tuple[float, ...] | None = None


class TrainingExamples(ABC):
    """The examples of a training split, endlessly and in a fresh order every epoch; the same
    sequence for the same seed (what an exact resume skips through)."""

    name: str  # where they come from, for messages
    has_scores: bool  # every example carries a teacher's scores

    @abstractmethod
    def __len__(self) -> int:
        """How many examples make one epoch."""

    @abstractmethod
    def epochs(self, seed: int) -> Iterator[Example]:
        """Every example once per epoch, epoch after epoch, in an order drawn from `seed`."""


T = TypeVar("T")


def buffered_shuffle(items: Iterable[T], size: int, rng: random.Random) -> Iterator[T]:
    """`items` shuffled within a buffer of `size` (what a stream larger than memory allows):
    each new item takes the place of one drawn from the buffer, which is shuffled and emptied
    at the end. With `size` >= the number of items this is `rng.shuffle` of them all, drawing
    the same numbers: an in-memory epoch and a streamed one agree."""
    buffer: list[T] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        at = rng.randrange(size)
        yield buffer[at]
        buffer[at] = item
    rng.shuffle(buffer)
    yield from buffer
