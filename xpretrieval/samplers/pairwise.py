"""Pairwise records: (query, relevant document, other document), from qrels with random or
hard negatives, from an ir-datasets id's docpairs (e.g. MS MARCO's training triples), or from
a Hub dataset's own examples (the split's `training`)."""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

from xpretrieval.core.config import register
from xpretrieval.core.errors import ConfigError, DataError
from xpretrieval.data.collection import Collection
from xpretrieval.data.documents import document_ids
from xpretrieval.data.examples import TrainingExamples
from xpretrieval.data.records import PairwiseRecord, Text
from xpretrieval.samplers.base import Sampler, shuffled_epochs
from xpretrieval.samplers.negatives import HardNegatives

logger = logging.getLogger(__name__)

Candidate = tuple[str, str, list[str]]
"""(query id, positive id, the negatives to draw from; empty: random unjudged documents)."""


@dataclass(frozen=True)
class Draw:
    """A query with one positive and its negatives, and a teacher's scores of them when known
    (the positive's first): what each sampler turns into its own record."""

    query: Text
    positive: Text
    negatives: tuple[Text, ...]
    scores: tuple[float, ...] | None = None


@register("sampler", "pairwise")
@dataclass
class PairwiseSampler(Sampler):
    """One record per (query, relevant document) pair; the negative is drawn uniformly from
    the documents not judged for that query, or from its hard negatives when set. With
    `docpairs`, one record per (query, preferred document) of the triples, its negative drawn
    among the documents the triples rank below it."""

    record: ClassVar[type] = PairwiseRecord

    min_relevance: int = 1  # judgements with at least this grade are positives
    hard_negatives: HardNegatives = field(default_factory=HardNegatives)  # off: random
    # an ir-datasets id whose docpairs replace the qrels' pairs and negatives, e.g.
    # msmarco-passage/train/triples-small; null: qrels
    docpairs: str | None = None

    def __post_init__(self) -> None:
        if self.docpairs is not None and self.hard_negatives.enabled:
            raise ValueError(
                f"docpairs={self.docpairs} brings its own negatives: leave hard_negatives off"
            )

    @cached_property
    def docpair_groups(self) -> dict[tuple[str, str], list[str]]:
        """(query, preferred document) -> the documents the docpairs rank below it, read once
        per sampler; ids are interned (MS MARCO's 40M triples name 0.5M queries and 9M
        passages, so a list of triples would take gigabytes)."""
        from xpretrieval.data.irds import iter_docpairs

        groups: dict[tuple[str, str], list[str]] = {}
        for query_id, preferred, other in iter_docpairs(self.docpairs):
            groups.setdefault((sys.intern(query_id), sys.intern(preferred)), []).append(
                sys.intern(other)
            )
        return groups

    def positive_pairs(self, collection: Collection) -> list[tuple[str, str]]:
        """(query id, document id) of every positive judgement, in a stable order."""
        pairs = [
            (query_id, doc_id)
            for query_id, judged in sorted(collection.qrels.items())
            for doc_id, grade in sorted(judged.items())
            if grade >= self.min_relevance
        ]
        if not pairs:
            raise DataError(
                f"{collection.name}: no judgement has relevance >= sampler.min_relevance="
                f"{self.min_relevance}; nothing to train on"
            )
        return pairs

    def epoch_size(self, collection: Collection) -> int:
        if collection.training is not None:
            return len(self.training_examples(collection))
        if self.docpairs is not None:
            return len(self.docpair_candidates(collection))
        return len(self.positive_pairs(collection))

    def records(self, collection: Collection, seed: int) -> Iterator[PairwiseRecord]:
        for draw in self.examples(collection, seed, 1):
            yield PairwiseRecord(draw.query, draw.positive, draw.negatives[0])

    def examples(self, collection: Collection, seed: int, n_negatives: int) -> Iterator[Draw]:
        """Endless draws of `n_negatives` negatives each, epoch after epoch in a fresh order:
        from the qrels (`draws`), or from the split's own training examples."""
        if collection.training is not None:
            return draws_from(self.training_examples(collection), seed, n_negatives)
        documents, queries = collection.documents, collection.queries
        return (
            Draw(
                Text(query_id, queries[query_id]),
                Text(positive_id, documents[positive_id]),
                tuple(Text(d, documents[d]) for d in negative_ids),
            )
            for query_id, positive_id, negative_ids in self.draws(collection, seed, n_negatives)
        )

    def training_examples(self, collection: Collection) -> TrainingExamples:
        """The split's own examples, which bring their negatives (none drawn here)."""
        assert collection.training is not None
        if self.hard_negatives.enabled or self.docpairs is not None:
            raise ConfigError(
                f"sampler.hard_negatives, sampler.docpairs: {collection.name} brings the "
                "negatives of its examples; leave them off"
            )
        return collection.training

    def candidates(self, collection: Collection) -> list[Candidate]:
        """The (query id, positive id) pairs of an epoch, each with its pool of negatives."""
        if self.docpairs is not None:
            return self.docpair_candidates(collection)
        hard = self.hard_negatives
        pools = hard.candidates(collection, self.min_relevance) if hard.enabled else {}
        candidates = [(q, d, pools.get(q, [])) for q, d in self.positive_pairs(collection)]
        for query_id, _, pool in candidates:
            if not pool and len(collection.qrels[query_id]) >= len(collection.documents):
                raise DataError(
                    f"{collection.name}: query {query_id!r} has every one of the "
                    f"{len(collection.documents)} documents judged, so no negative can be drawn "
                    "for it; training needs documents it has no judgement for"
                )
        return candidates

    def docpair_candidates(self, collection: Collection) -> list[Candidate]:
        """Each (query, preferred document) of the docpairs with the documents ranked below
        it, in the triples' order; triples naming unknown ids are left out (counted)."""
        documents, candidates = collection.documents, []
        total = kept = 0
        for (query_id, preferred), others in self.docpair_groups.items():
            total += len(others)
            if query_id in collection.queries and preferred in documents:
                known = [other for other in others if other in documents]
                if known:
                    candidates.append((query_id, preferred, known))
                    kept += len(known)
        if kept < total:
            logger.warning(
                "%s: %d of %d docpairs name a query or document that %s lacks; left out",
                self.docpairs,
                total - kept,
                total,
                collection.name,
            )
        if not candidates:
            raise DataError(f"{self.docpairs}: no docpair names {collection.name}'s ids")
        return candidates

    def draws(
        self, collection: Collection, seed: int, n_negatives: int
    ) -> Iterator[tuple[str, str, list[str]]]:
        """Endless (query id, positive id, negative ids), epoch after epoch in a fresh order."""
        candidates = self.candidates(collection)
        doc_ids = document_ids(collection.documents)
        rng = random.Random(seed)
        for query_id, positive_id, pool in shuffled_epochs(candidates, rng):
            negatives = [
                pool[rng.randrange(len(pool))]
                if pool
                else _random_unjudged(rng, doc_ids, collection.qrels[query_id])
                for _ in range(n_negatives)
            ]
            yield query_id, positive_id, negatives


def _random_unjudged(rng: random.Random, doc_ids: Sequence[str], judged: dict[str, int]) -> str:
    """A uniformly drawn document that the query has no judgement for (`candidates` made sure
    there is one)."""
    while True:
        doc_id = doc_ids[rng.randrange(len(doc_ids))]
        if doc_id not in judged:
            return doc_id


def draws_from(examples: TrainingExamples, seed: int, n_negatives: int) -> Iterator[Draw]:
    """Each example, epoch after epoch, with one of its positives and `n_negatives` of its
    negatives drawn with `seed`: distinct while it has that many, else some repeated (as
    tevatron draws a group), their teacher scores alongside."""
    rng = random.Random(seed)
    for example in examples.epochs(seed):
        pool = len(example.negatives)
        if not pool:
            raise DataError(
                f"{examples.name}: the example of query {example.query.text!r} has no negative, "
                f"and the sampler draws {n_negatives} per record; give the dataset negatives"
            )
        if pool >= n_negatives:
            picks = rng.sample(range(pool), n_negatives)
        else:
            picks = [rng.randrange(pool) for _ in range(n_negatives)]
        positives = example.positives
        positive = positives[rng.randrange(len(positives))] if len(positives) > 1 else positives[0]
        scores = example.scores
        if scores is not None:
            scores = (scores[0], *(scores[1 + at] for at in picks))
        yield Draw(example.query, positive, tuple(example.negatives[at] for at in picks), scores)
