"""Pairwise records from qrels: (query, judged-relevant document, random other document)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from xpretrieval.config import register
from xpretrieval.data.collection import Collection
from xpretrieval.samplers.base import Sampler
from xpretrieval.samplers.negatives import HardNegatives
from xpretrieval.samplers.records import PairwiseRecord, Text


@register("sampler", "pairwise")
@dataclass
class PairwiseSampler(Sampler):
    """One record per (query, relevant document) pair; the negative is drawn uniformly from
    the documents not judged for that query, or from its hard negatives when set."""

    min_relevance: int = 1  # judgements with at least this grade are positives
    hard_negatives: HardNegatives = field(default_factory=HardNegatives)  # off: random

    def positive_pairs(self, collection: Collection) -> list[tuple[str, str]]:
        """(query id, document id) of every positive judgement, in a stable order."""
        pairs = [
            (query_id, doc_id)
            for query_id, judged in sorted(collection.qrels.items())
            for doc_id, grade in sorted(judged.items())
            if grade >= self.min_relevance
        ]
        if not pairs:
            raise ValueError(
                f"{collection.name}: no judgement has relevance >= sampler.min_relevance="
                f"{self.min_relevance}; nothing to train on"
            )
        return pairs

    def epoch_size(self, collection: Collection) -> int:
        return len(self.positive_pairs(collection))

    def records(self, collection: Collection, seed: int) -> Iterator[PairwiseRecord]:
        for query_id, positive_id, negative_ids in self.draws(collection, seed, 1):
            yield PairwiseRecord(
                query=Text(query_id, collection.queries[query_id]),
                positive=Text(positive_id, collection.documents[positive_id]),
                negative=Text(negative_ids[0], collection.documents[negative_ids[0]]),
            )

    def candidates(self, collection: Collection) -> tuple[list[tuple[str, str]], dict]:
        """The (query id, positive id) pairs to draw, and each query's pool of negatives (a
        query without one draws random unjudged documents)."""
        pools = self.hard_negatives.candidates(collection) if self.hard_negatives.enabled else {}
        return self.positive_pairs(collection), pools

    def draws(
        self, collection: Collection, seed: int, n_negatives: int
    ) -> Iterator[tuple[str, str, list[str]]]:
        """Endless (query id, positive id, negative ids), epoch after epoch in a fresh order."""
        pairs, pools = self.candidates(collection)
        doc_ids = list(collection.documents)
        rng = random.Random(seed)
        while True:
            order = list(pairs)
            rng.shuffle(order)
            for query_id, positive_id in order:
                pool = pools.get(query_id)
                negatives = [
                    pool[rng.randrange(len(pool))]
                    if pool
                    else _random_unjudged(rng, doc_ids, collection.qrels[query_id], query_id)
                    for _ in range(n_negatives)
                ]
                yield query_id, positive_id, negatives


def _random_unjudged(
    rng: random.Random, doc_ids: list[str], judged: dict[str, int], query_id: str
) -> str:
    """A uniformly drawn document that the query has no judgement for."""
    if len(judged) >= len(doc_ids):
        raise ValueError(f"query {query_id!r} has every document judged: no negative to draw")
    while True:
        doc_id = doc_ids[rng.randrange(len(doc_ids))]
        if doc_id not in judged:
            return doc_id
