"""Re-ranking: score each query's candidates from a first stage (a TREC run file, or BM25)
with the model, exactly. For models too costly to search a whole collection with (ColBERT
MaxSim on a CPU, cross-encoders)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from xpretrieval.data.collection import Collection
from xpretrieval.device import Precision
from xpretrieval.models.base import Encoder
from xpretrieval.retrieval.encode import encode_texts
from xpretrieval.retrieval.retrieve import Retrieval
from xpretrieval.retrieval.run import Run, read_trec_run

logger = logging.getLogger(__name__)


@dataclass
class FirstStage:
    """Where candidates come from: a TREC run over the collection's queries, or BM25."""

    run_file: str | None = None  # null: BM25 (bm25s) on the collection
    top_k: int = 100  # candidates per query

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")

    def run(self, collection: Collection) -> Run:
        """Each query's first `top_k` candidates (those naming known documents)."""
        if self.run_file is not None:
            run = read_trec_run(self.run_file)
        else:
            from xpretrieval.models.bm25 import Bm25

            logger.info("First stage: BM25 top %d on %s", self.top_k, collection.name)
            run, _ = Bm25().build().rank(collection, self.top_k)
        known = collection.documents
        return {
            query_id: [(d, s) for d, s in run.get(query_id, []) if d in known][: self.top_k]
            for query_id in collection.queries
        }


def rerank(
    model: Encoder,
    collection: Collection,
    first_stage: FirstStage,
    batch_size: int,
    device: torch.device,
    precision: Precision = Precision.auto,
) -> Retrieval:
    """The first stage's candidates of every query, ordered by the model's scores."""
    candidates = first_stage.run(collection)
    needed = sorted({doc for ranking in candidates.values() for doc, _ in ranking})
    row = {doc: i for i, doc in enumerate(needed)}
    settings = {"batch_size": batch_size, "device": device, "precision": precision}
    texts = [collection.documents[doc] for doc in needed]
    documents = encode_texts(model.encode_documents, texts, desc="encode candidates", **settings)
    query_ids = list(collection.queries)
    query_texts = [collection.queries[q] for q in query_ids]
    queries = encode_texts(model.encode_queries, query_texts, desc="encode queries", **settings)
    start = time.perf_counter()
    run: Run = {}
    with torch.inference_mode():
        for i, query_id in enumerate(query_ids):
            docs = [doc for doc, _ in candidates[query_id]]
            if not docs:
                run[query_id] = []
                continue
            rows = torch.tensor([row[doc] for doc in docs])
            scores = model.score(queries[i : i + 1], documents[rows])[0].tolist()
            run[query_id] = sorted(zip(docs, scores, strict=True), key=lambda item: -item[1])
    seconds = time.perf_counter() - start
    statistics = {
        "candidates_per_query": sum(len(r) for r in run.values()) / max(1, len(run)),
        "documents_encoded": len(needed),
        "rerank_seconds": seconds,
    }
    return Retrieval(run, statistics)
