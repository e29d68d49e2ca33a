"""Batchers group sampled records into the batches of training steps."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from xpretrieval.config import register


@dataclass
class Batcher(ABC):
    """Turns a record stream into a stream of batches."""

    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @abstractmethod
    def batches(self, records: Iterator) -> Iterator[list]:
        """Batches of `batch_size` records each."""


@register("batcher", "fixed")
@dataclass
class FixedBatcher(Batcher):
    """Consecutive records, `batch_size` at a time, in one forward and backward pass."""

    def batches(self, records: Iterator) -> Iterator[list]:
        while batch := list(islice(records, self.batch_size)):
            yield batch
