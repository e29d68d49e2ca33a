"""Hard negatives: documents a first-stage ranker placed high for a query without a judgement,
from a TREC run file or from BM25 computed on the training collection."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from xpretrieval.data.collection import Collection
from xpretrieval.retrieval.rerank import FirstStage

logger = logging.getLogger(__name__)


@dataclass
class HardNegatives:
    """Where hard negatives come from and which ranks of it to draw from; off (random
    negatives) while top_k is 0."""

    run_file: str | None = None  # a TREC run over the training queries; null: BM25 (bm25s)
    top_k: int = 0  # draw among the first top_k documents of a query's ranking; 0: off
    skip_top: int = 0  # ...after skipping this many (the very top may hold unjudged positives)

    def __post_init__(self) -> None:
        if self.top_k == 0 and self.run_file is not None:
            raise ValueError("run_file needs top_k > 0: the ranks to draw hard negatives from")
        if self.top_k and not 0 <= self.skip_top < self.top_k:
            raise ValueError(
                f"need 0 <= skip_top < top_k, got skip_top={self.skip_top}, top_k={self.top_k}"
            )

    @property
    def enabled(self) -> bool:
        return self.top_k > 0

    def candidates(self, collection: Collection) -> dict[str, list[str]]:
        """For each training query, its unjudged documents among ranks skip_top..top_k."""
        run = FirstStage(self.run_file, self.top_k).run(collection)
        pools = {}
        for query_id, judged in collection.qrels.items():
            ranked = [doc for doc, _ in run.get(query_id, [])][self.skip_top : self.top_k]
            pools[query_id] = [
                doc for doc in ranked if doc not in judged and doc in collection.documents
            ]
        empty = sum(not pool for pool in pools.values())
        if empty:
            logger.warning(
                "%s: %d of %d training queries have no hard negative in ranks %d-%d; they draw "
                "random ones",
                collection.name,
                empty,
                len(pools),
                self.skip_top + 1,
                self.top_k,
            )
        return pools
