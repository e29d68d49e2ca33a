"""What a batchwise loss receives, and the base of loss configs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class BatchScores:
    """Scores of the B queries of a batch against the N documents of the same batch.

    Each document was brought to the batch by one query (its positive or one of its
    negatives): `owners[j]` is that query's row, and `targets[i]` is the column of query
    i's positive. Other queries' documents serve as in-batch negatives.
    """

    scores: Tensor  # [B, N]
    targets: Tensor  # [B] long
    owners: Tensor  # [N] long

    def __post_init__(self) -> None:
        rows, columns = self.scores.shape
        if self.targets.shape != (rows,) or self.owners.shape != (columns,):
            raise ValueError(
                f"scores {tuple(self.scores.shape)} need targets of shape ({rows},) and owners "
                f"of shape ({columns},), got {tuple(self.targets.shape)} and "
                f"{tuple(self.owners.shape)}"
            )


@dataclass
class BatchwiseLoss(ABC):
    """A loss over the scores of a batch; `weight` scales it among the training terms."""

    weight: float = 1.0

    @abstractmethod
    def __call__(self, batch: BatchScores) -> Tensor:
        """The (unweighted) scalar loss of the batch."""
