"""Trainers: how long to train, and what one step computes (records -> named loss terms)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.data.records import (
    WITH_NEGATIVES,
    DistillationRecord,
    PointwiseRecord,
    PositiveRecord,
)
from xpretrieval.losses.base import BatchScores, Loss
from xpretrieval.models.base import BiEncoder, PairScorer, PartedScore, TermWeighted


@dataclass(frozen=True)
class StepOutput:
    """What a training step computed: unweighted loss terms, and statistics to log (0-d)."""

    terms: dict[str, Tensor]
    statistics: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Trainer(ABC):
    """Length and book-keeping of training, and the step that turns a batch into loss terms."""

    reads: ClassVar[tuple[type, ...]]  # the record types its step understands

    max_steps: int | None = None  # when set, wins over epochs
    epochs: float = 1.0  # passes over the training data, when max_steps is unset
    grad_clip: float | None = 1.0  # maximum gradient norm; null disables clipping
    log_every: int = 10  # steps between rows of the CSV / TensorBoard logs
    checkpoint_every: int = 0  # steps between checkpoints; 0: none by step count
    # minutes between checkpoints, whatever the step (a run killed late keeps most of its
    # work); null: none by time. Either way the last step is checkpointed
    checkpoint_minutes: float | None = 30.0
    keep_checkpoints: int = 2  # most recent checkpoints kept on disk
    # several processes (torchrun): score each query against the documents of every process,
    # i.e. the loss of the global batch, as one process computes it; false: each process's
    # loss on its share of the records, in-batch negatives within a process (cheaper)
    cross_device_negatives: bool = True

    def __post_init__(self) -> None:
        check_range("max_steps", self.max_steps, at_least=1, optional=True)
        check_range("epochs", self.epochs, above=0)
        check_range("grad_clip", self.grad_clip, above=0, optional=True)
        for name in ("log_every", "keep_checkpoints"):
            check_range(name, getattr(self, name), at_least=1)
        check_range("checkpoint_every", self.checkpoint_every, at_least=0)
        check_range("checkpoint_minutes", self.checkpoint_minutes, above=0, optional=True)

    def total_steps(self, epoch_size: int, batch_size: int) -> int:
        """Steps to run: max_steps, or enough batches for `epochs` passes over the data."""
        if self.max_steps is not None:
            return self.max_steps
        return max(1, math.ceil(self.epochs * epoch_size / batch_size))

    @abstractmethod
    def texts(self, batch: list) -> tuple[list[str], list[str]]:
        """The query texts and the document texts that a batch needs encoded."""

    @abstractmethod
    def loss_terms(
        self,
        model: BiEncoder,
        batch: list,
        queries: Tensor,
        documents: Tensor,
        losses: dict[str, Loss],
    ) -> StepOutput:
        """Unweighted loss terms of a batch whose texts are encoded, by name (the learner
        weighs, sums and logs them), with each term's statistics as `<term>/<statistic>`."""

    @abstractmethod
    def pair_terms(self, model: PairScorer, batch: list, losses: dict[str, Loss]) -> StepOutput:
        """Loss terms for a model that reads each query with each document (a cross-encoder)."""


@register("trainer", "batchwise")
@dataclass
class BatchwiseTrainer(Trainer):
    """Scores every query of the batch against every document of the batch.

    The documents are the records' positives then their negatives, so that a batchwise loss
    can use the other queries' documents as in-batch negatives.
    """

    reads: ClassVar[tuple[type, ...]] = (PositiveRecord, *WITH_NEGATIVES)

    def texts(self, batch: list) -> tuple[list[str], list[str]]:
        positives = [record.positive.text for record in batch]
        negatives = [doc.text for record in batch for doc in record.negatives]
        return [record.query.text for record in batch], positives + negatives

    def loss_terms(
        self,
        model: BiEncoder,
        batch: list,
        queries: Tensor,
        documents: Tensor,
        losses: dict[str, Loss],
    ) -> StepOutput:
        rows, owners = self._layout(batch, queries.device)
        parts = model.score_parts(queries, documents) if isinstance(model, PartedScore) else {}
        term_weights = model.term_weights if isinstance(model, TermWeighted) else None
        scored = BatchScores(
            scores=sum(parts.values()) if parts else model.score(queries, documents),
            targets=rows,
            owners=owners,
            queries=queries,
            documents=documents,
            query_terms=None if term_weights is None else term_weights(queries),
            doc_terms=None if term_weights is None else term_weights(documents),
            parts=parts,
            teacher=_teacher_scores(batch, queries.device),
            false_negatives=_false_negatives(batch, queries.device),
        )
        return _terms(scored, losses)

    def pair_terms(self, model: PairScorer, batch: list, losses: dict[str, Loss]) -> StepOutput:
        """Loss terms for a model that reads each query with each document (a cross-encoder):
        only the records' own pairs are scored unless a term ranks against in-batch ones."""
        query_texts, doc_texts = self.texts(batch)
        rows, owners = self._layout(batch, model.device)
        all_pairs = any(not loss.needs_own_negatives() for loss in losses.values())
        pairs = None if all_pairs else owners.unsqueeze(0) == rows.unsqueeze(1)
        scores = model.score_texts(query_texts, doc_texts, pairs)
        teacher = _teacher_scores(batch, scores.device)
        false_negatives = _false_negatives(batch, scores.device)
        scored = BatchScores(scores, rows, owners, teacher=teacher, false_negatives=false_negatives)
        return _terms(scored, losses)

    @staticmethod
    def _layout(batch: list, device: torch.device) -> tuple[Tensor, Tensor]:
        """(each query's row = its positive's column, the query row owning each column)."""
        rows = torch.arange(len(batch), device=device)
        negatives = [row for row, record in enumerate(batch) for _ in record.negatives]
        return rows, torch.cat([rows, torch.tensor(negatives, dtype=torch.long, device=device)])


@register("trainer", "pointwise")
@dataclass
class PointwiseTrainer(Trainer):
    """One (query, document) per record, scored against its label: record i's score is
    scores[i, i]. Needs pointwise records (sampler=pointwise)."""

    reads: ClassVar[tuple[type, ...]] = (PointwiseRecord,)

    def texts(self, batch: list) -> tuple[list[str], list[str]]:
        return [r.query.text for r in batch], [r.document.text for r in batch]

    def loss_terms(
        self,
        model: BiEncoder,
        batch: list,
        queries: Tensor,
        documents: Tensor,
        losses: dict[str, Loss],
    ) -> StepOutput:
        return self._labelled(model.score(queries, documents), batch, losses)

    def pair_terms(self, model: PairScorer, batch: list, losses: dict[str, Loss]) -> StepOutput:
        query_texts, doc_texts = self.texts(batch)
        pairs = torch.eye(len(batch), dtype=torch.bool)
        return self._labelled(model.score_texts(query_texts, doc_texts, pairs), batch, losses)

    @staticmethod
    def _labelled(scores: Tensor, batch: list, losses: dict[str, Loss]) -> StepOutput:
        rows = torch.arange(len(batch), device=scores.device)
        labels = torch.tensor([r.label for r in batch], device=scores.device)
        return _terms(BatchScores(scores, rows, rows, labels=labels), losses)


def _false_negatives(batch: list, device: torch.device) -> Tensor:
    """`[B, N]`: True where document column j (positives, then negatives, as `texts` lays them
    out) is one of query i's positives but not its own target column."""
    positives: dict[str, set[str]] = {}
    for record in batch:
        positives.setdefault(record.query.id, set()).add(record.positive.id)
    columns = [r.positive.id for r in batch] + [d.id for r in batch for d in r.negatives]
    mask = torch.tensor(
        [[doc_id in positives[record.query.id] for doc_id in columns] for record in batch],
        dtype=torch.bool,
        device=device,
    )
    rows = torch.arange(len(batch), device=device)
    mask[rows, rows] = False
    return mask


def _teacher_scores(batch: list, device: torch.device) -> Tensor | None:
    """The records' teacher scores `[B, 1 + n]` when they carry some (distillation records)."""
    if not isinstance(batch[0], DistillationRecord):
        return None
    return torch.tensor([record.teacher_scores for record in batch], device=device)


def _terms(scored: BatchScores, losses: dict[str, Loss]) -> StepOutput:
    """Each loss term on its part of the scores, and their statistics."""
    terms = {name: loss(scored.on(loss.part)) for name, loss in losses.items()}
    with torch.no_grad():
        statistics = {
            f"{name}/{key}": value
            for name, loss in losses.items()
            for key, value in loss.statistics(scored.on(loss.part)).items()
        }
    return StepOutput(terms, statistics)
