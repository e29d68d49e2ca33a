"""What a loss receives, and the base of loss configs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:  # training imports losses: importing it here at run time would be circular
    from xpretrieval.training.hooks import Hook


@dataclass(frozen=True)
class BatchScores:
    """Scores of the B queries of a batch against the N documents of the same batch, and the
    representations they were computed from (which regularisers read).

    Each document was brought to the batch by one query (its positive or one of its
    negatives): `owners[j]` is that query's row, and `targets[i]` is the column of query
    i's positive. Other queries' documents serve as in-batch negatives.
    """

    scores: Tensor  # [B, N]
    targets: Tensor  # [B] long
    owners: Tensor  # [N] long
    queries: Tensor | None = None  # [B, ...] query representations
    documents: Tensor | None = None  # [N, ...] document representations

    def __post_init__(self) -> None:
        rows, columns = self.scores.shape
        if self.targets.shape != (rows,) or self.owners.shape != (columns,):
            raise ValueError(
                f"scores {tuple(self.scores.shape)} need targets of shape ({rows},) and owners "
                f"of shape ({columns},), got {tuple(self.targets.shape)} and "
                f"{tuple(self.owners.shape)}"
            )


@dataclass
class Loss(ABC):
    """A training term computed from a scored batch; `weight` scales it in the total."""

    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")

    def weight_at(self, step: int) -> float:
        """The term's weight at training step `step` (1-based); constant unless scheduled."""
        return self.weight

    @abstractmethod
    def __call__(self, batch: BatchScores) -> Tensor:
        """The (unweighted) scalar value of this term on the batch."""

    def statistics(self, batch: BatchScores) -> dict[str, float]:
        """Values worth logging about the batch beside the term itself (none by default)."""
        return {}

    def hooks(self, name: str) -> list[Hook]:
        """Training hooks this term needs, given its name in `losses` (none by default)."""
        return []
