"""Hard negatives: documents a first-stage ranker placed high for a query without a judgement,
from a TREC run file, an ir-datasets id's scoreddocs, or BM25 computed on the training
collection; optionally filtered by a cross-encoder's scores (`filter`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from xpretrieval.data.collection import Collection
from xpretrieval.retrieval.rerank import FirstStage
from xpretrieval.samplers.negative_filter import CrossEncoderFilter

logger = logging.getLogger(__name__)


@dataclass
class HardNegatives(FirstStage):
    """The first stage (run_file, scoreddocs or BM25) whose ranks skip_top..top_k of each
    query hold its hard negatives; off (random negatives) while top_k is 0."""

    skip_top: int = 0  # ranks skipped at the top (they may hold unjudged positives)
    # also draw documents judged non-relevant (grade below the sampler's min_relevance): the
    # hardest negatives of TREC-style qrels; judged positives are never drawn
    judged_negatives: bool = False
    # a run file or scoreddocs may rank only some training queries: the others draw random
    # negatives (counted in a warning)
    partial: bool = True
    # a cross-encoder that drops candidates scored too close to the positive or too high;
    # off while filter.model is null
    filter: CrossEncoderFilter = field(default_factory=CrossEncoderFilter)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.filter.enabled and not self.enabled:
            raise ValueError(
                f"filter.model={self.filter.model!r} filters hard negatives, which are off "
                "(top_k=0); set top_k, e.g. 50"
            )
        if self.top_k == 0 and (self.run_file is not None or self.scoreddocs is not None):
            source = "run_file" if self.run_file is not None else "scoreddocs"
            raise ValueError(f"{source} needs top_k > 0: the ranks to draw hard negatives from")
        if self.top_k and not 0 <= self.skip_top < self.top_k:
            raise ValueError(
                f"need 0 <= skip_top < top_k, got skip_top={self.skip_top}, top_k={self.top_k}"
            )

    def candidates(self, collection: Collection, min_relevance: int = 1) -> dict[str, list[str]]:
        """For each training query, its documents among ranks skip_top..top_k that are not
        judged (or, with judged_negatives, judged below min_relevance), less those `filter`
        drops."""
        run = self.run(collection, "sampler.hard_negatives")
        pools = {}
        for query_id, judged in collection.qrels.items():
            excluded = {
                doc
                for doc, grade in judged.items()
                if not self.judged_negatives or grade >= min_relevance
            }
            ranked = [doc for doc, _ in run.get(query_id, [])][self.skip_top : self.top_k]
            pools[query_id] = [
                doc for doc in ranked if doc not in excluded and doc in collection.documents
            ]
        if self.filter.enabled:
            pools = self.filter.apply(collection, pools, min_relevance)
        empty = sum(not pool for pool in pools.values())
        if empty:
            logger.warning(
                "%s: %d of %d training queries have no hard negative in ranks %d-%d%s; they "
                "draw random ones",
                collection.name,
                empty,
                len(pools),
                self.skip_top + 1,
                self.top_k,
                " that the filter kept" if self.filter.enabled else "",
            )
        return pools
