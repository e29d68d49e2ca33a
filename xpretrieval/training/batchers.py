"""Batchers group sampled records into the batches of training steps."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register

logger = logging.getLogger(__name__)


@dataclass
class Batcher(ABC):
    """Turns a record stream into a stream of batches."""

    batch_size: int = 32

    def __post_init__(self) -> None:
        check_range("batch_size", self.batch_size, at_least=1)

    @abstractmethod
    def batches(self, records: Iterator) -> Iterator[list]:
        """Batches of `batch_size` records each."""

    def micro_batch_size(self) -> int | None:
        """Texts encoded per pass when a batch is split (the loss still sees the whole
        batch: `training.grad_cache`); None: the whole batch in one pass."""
        return None

    def after_out_of_memory(self) -> bool:
        """Called when a step ran out of memory: True if the batcher now splits batches
        finer and the step should be tried again."""
        return False


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
        check_range("micro", self.micro, at_least=1)

    def micro_batch_size(self) -> int | None:
        return self.micro


@register("batcher", "adaptive")
@dataclass
class AdaptiveBatcher(FixedBatcher):
    """Tries each batch in one pass; when a step runs out of memory, halves the texts encoded
    per pass and retries it (as xpmir's power-adaptive batcher), down to `min_micro`. The
    split uses cached representations, so the loss is that of the whole batch throughout."""

    min_micro: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("min_micro", self.min_micro, at_least=1)
        self._micro: int | None = None  # None: whole batches; not a config field

    def micro_batch_size(self) -> int | None:
        return self._micro

    def after_out_of_memory(self) -> bool:
        # the largest batch encodes every text: its positives and negatives
        current = self._micro if self._micro is not None else 2 * self.batch_size
        if current // 2 < self.min_micro:
            return False
        self._micro = current // 2
        logger.warning("Out of memory: now encoding %d texts at a time", self._micro)
        return True
