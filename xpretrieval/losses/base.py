"""What a loss receives, and the base of loss configs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import ClassVar

from torch import Tensor

from xpretrieval.core.checks import check_range
from xpretrieval.core.hooks import Hook
from xpretrieval.models.base import TrainableModel


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
    # vocabulary-sized term weights [B or N, vocab] of sparse models, which regularisers read
    query_terms: Tensor | None = None
    doc_terms: Tensor | None = None
    # named parts of a score that is a sum (SparseEmbed: sparse and dense), each [B, N]
    parts: dict[str, Tensor] = field(default_factory=dict)
    # a teacher's scores of each record's positive then negatives, [B, 1 + n] (distillation)
    teacher: Tensor | None = None
    # relevance label of each query's target document, [B] (pointwise records)
    labels: Tensor | None = None
    # [B, N] True where a column other than query i's target holds one of its positives (the
    # same document brought again, or by another record of the same query): a false negative
    false_negatives: Tensor | None = None

    def __post_init__(self) -> None:
        rows, columns = self.scores.shape
        if self.targets.shape != (rows,) or self.owners.shape != (columns,):
            raise ValueError(
                f"scores {tuple(self.scores.shape)} need targets of shape ({rows},) and owners "
                f"of shape ({columns},), got {tuple(self.targets.shape)} and "
                f"{tuple(self.owners.shape)}"
            )

    def on(self, part: str | None) -> BatchScores:
        """The same batch scored by one named part of the model's score (None: the total)."""
        if part is None:
            return self
        if part not in self.parts:
            known = ", ".join(self.parts) or "none: its score has no parts"
            raise ValueError(f"the model's score has no part {part!r} (parts: {known})")
        return replace(self, scores=self.parts[part])


@dataclass
class Loss(ABC):
    """A training term computed from a scored batch; `weight` scales it in the total.

    Each concrete term documents, after its summary, its `Reference:` (the paper, and the
    implementation it follows where there is one), its `Inputs:` (the fields of
    [`BatchScores`][xpretrieval.losses.base.BatchScores] it reads, the model kind and records
    it needs, the settings that matter) and its `Citation:` (BibTeX), where a paper exists.
    """

    # the model kind whose scores or representations the term reads
    model_kind: ClassVar[type] = TrainableModel
    # the record types that carry what the term reads (a teacher's scores, labels); None: any
    # that the trainer reads (with negatives of their own when `needs_own_negatives`)
    record_kinds: ClassVar[tuple[type, ...] | None] = None
    # reads scores as cosines (angles): a model whose scores are not is refused
    needs_cosine_scores: ClassVar[bool] = False

    weight: float = 1.0
    # which named part of the model's score the term sees (SparseEmbed: sparse or dense);
    # null: the whole score
    part: str | None = None

    def __post_init__(self) -> None:
        check_range("weight", self.weight, at_least=0)

    def weight_at(self, step: int) -> float:
        """The term's weight at training step `step` (1-based); constant unless scheduled."""
        return self.weight

    @abstractmethod
    def __call__(self, batch: BatchScores) -> Tensor:
        """The (unweighted) scalar value of this term on the batch."""

    def statistics(self, batch: BatchScores) -> dict[str, Tensor]:
        """Values worth logging about the batch beside the term itself, as 0-d tensors (read
        only on logged steps, so that a GPU is not waited for at every step; none by default)."""
        return {}

    def needs_own_negatives(self) -> bool:
        """True when the term ranks each query's positive against its own negatives only,
        which records without negatives (random spans) cannot feed."""
        return False

    def state_dict(self) -> dict[str, float]:
        """What the term learned during training (checkpointed for exact resumption)."""
        return {}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore what `state_dict` returned (a stateless term has nothing to restore)."""
        del state

    def hooks(self, name: str) -> list[Hook]:
        """Training hooks this term needs, given its name in `losses` (none by default)."""
        return []
