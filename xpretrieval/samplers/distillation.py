"""Distillation records: a query, its positive, n negatives and a teacher's score for each,
read from the teacher's TREC run over the training queries: a file (e.g. written by `python -m
xpretrieval mine` with the teacher), or the one a `teacher` model writes at the start of the
run (xpretrieval/training/teacher.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from xpretrieval.core.config import register
from xpretrieval.core.errors import DataError
from xpretrieval.data.collection import Collection
from xpretrieval.data.records import DistillationRecord, Text
from xpretrieval.data.run import read_trec_run
from xpretrieval.samplers.pairwise import Candidate, PairwiseSampler

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
        return len(self.candidates(collection))

    def records(self, collection: Collection, seed: int) -> Iterator[DistillationRecord]:
        teacher = self.teacher_scores
        for query_id, positive_id, negative_ids in self.draws(collection, seed, self.negatives):
            scores = teacher[query_id]
            yield DistillationRecord(
                query=Text(query_id, collection.queries[query_id]),
                positive=Text(positive_id, collection.documents[positive_id]),
                negatives=tuple(Text(d, collection.documents[d]) for d in negative_ids),
                teacher_scores=(scores[positive_id], *(scores[d] for d in negative_ids)),
            )
