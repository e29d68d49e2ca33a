"""Distillation records: a query, its positive, n negatives and a teacher's score for each,
read from the teacher's TREC run over the training queries: a file (e.g. written by `python -m
xpretrieval mine` with the teacher), or the one a `teacher` model writes at the start of the
run (xpretrieval/training/teacher.py); or the scores a Hub dataset's examples carry."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from typing import ClassVar

from xpretrieval.core.config import register
from xpretrieval.core.errors import ConfigError, DataError
from xpretrieval.data.collection import Collection
from xpretrieval.data.examples import TrainingExamples
from xpretrieval.data.records import DistillationRecord
from xpretrieval.data.run import read_trec_run
from xpretrieval.samplers.pairwise import Candidate, Draw, PairwiseSampler

logger = logging.getLogger(__name__)


@register("sampler", "distillation")
@dataclass
class DistillationSampler(PairwiseSampler):
    """Negatives drawn among the teacher's top_k unjudged documents of the query; pairs whose
    positive the teacher did not score are skipped (counted in the log)."""

    record: ClassVar[type] = DistillationRecord

    # TREC run file with the teacher's scores; null: the run's `teacher` model writes one
    teacher_run: str | None = None
    negatives: int = 1
    top_k: int = 100

    def __post_init__(self) -> None:
        if self.negatives < 1 or self.top_k < 1:
            raise ValueError(
                f"need negatives >= 1 and top_k >= 1, got {self.negatives} and {self.top_k}"
            )
        if self.hard_negatives.enabled or self.docpairs is not None:
            raise ValueError(
                "hard_negatives, docpairs: a distillation sampler draws from the teacher run"
            )

    @cached_property
    def teacher_scores(self) -> dict[str, dict[str, float]]:
        """Query id -> document id -> the teacher's score (the run file is read once)."""
        if self.teacher_run is None:
            raise ValueError("teacher_run is not set: no teacher scores to read")
        return {q: dict(ranking) for q, ranking in read_trec_run(self.teacher_run).items()}

    def candidates(self, collection: Collection) -> list[Candidate]:
        """The pairs whose positive the teacher scored and whose query has unjudged documents
        among the teacher's top_k, each with those documents (the negatives to draw)."""
        teacher = self.teacher_scores
        pools = {
            q: [
                d
                for d, _ in sorted(scores.items(), key=lambda item: -item[1])[: self.top_k]
                if d not in collection.qrels[q] and d in collection.documents
            ]
            for q, scores in teacher.items()
            if q in collection.qrels
        }
        every = self.positive_pairs(collection)
        pairs = [(q, d, pools[q]) for q, d in every if d in teacher.get(q, {}) and pools.get(q)]
        if len(pairs) < len(every):
            logger.warning(
                "%s: the teacher run scores no positive of %d pairs (or no unjudged document)",
                self.teacher_run,
                len(every) - len(pairs),
            )
        if not pairs:
            raise DataError(f"{self.teacher_run}: no positive training pair has a teacher score")
        return pairs

    def epoch_size(self, collection: Collection) -> int:
        if collection.training is not None:
            return len(self.training_examples(collection))
        return len(self.candidates(collection))

    def training_examples(self, collection: Collection) -> TrainingExamples:
        """The split's own examples, which must carry the teacher's scores (none else)."""
        examples = super().training_examples(collection)
        if self.teacher_run is not None:
            raise ConfigError(
                f"sampler.teacher_run: {examples.name} brings its own examples; set "
                "sampler.teacher_run=null (the dataset's scores are the teacher's)"
            )
        if not examples.has_scores:
            raise DataError(
                f"{examples.name}: its examples carry no teacher scores, which sampler="
                "distillation reads; use a layout with scores (a label or score column, or "
                "pylate's scores) or another sampler"
            )
        return examples

    def examples(self, collection: Collection, seed: int, n_negatives: int) -> Iterator[Draw]:
        """The draws, with the teacher's scores: the dataset's own, or the run file's."""
        draws = super().examples(collection, seed, n_negatives)
        if collection.training is not None:
            return draws
        teacher = self.teacher_scores

        def scored(draw: Draw) -> Draw:
            scores, documents = teacher[draw.query.id], (draw.positive, *draw.negatives)
            return replace(draw, scores=tuple(scores[d.id] for d in documents))

        return map(scored, draws)

    def records(self, collection: Collection, seed: int) -> Iterator[DistillationRecord]:
        for draw in self.examples(collection, seed, self.negatives):
            assert draw.scores is not None
            yield DistillationRecord(draw.query, draw.positive, draw.negatives, draw.scores)
