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

    def micro_batch_size(self) -> int | None:
        """Texts encoded per pass when a batch is split (the loss still sees the whole
        batch: `training.grad_cache`); None: the whole batch in one pass."""
        return None


@register("batcher", "fixed")
@dataclass
class FixedBatcher(Batcher):
    """Consecutive records, `batch_size` at a time, in one forward and backward pass."""

    def batches(self, records: Iterator) -> Iterator[list]:
        while batch := list(islice(records, self.batch_size)):
            yield batch


@register("batcher", "micro")
@dataclass
class MicroBatcher(FixedBatcher):
    """Batches of `batch_size` records whose texts are encoded `micro` at a time: the memory
    of a small batch, the loss (in-batch negatives, FLOPS) of the large one."""

    micro: int = 8  # texts per forward-backward pass

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.micro < 1:
            raise ValueError(f"micro must be >= 1, got {self.micro}")

    def micro_batch_size(self) -> int | None:
        return self.micro
