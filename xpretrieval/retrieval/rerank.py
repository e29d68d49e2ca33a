"""Re-ranking: score each query's candidates from a first stage (a TREC run file, or BM25)
with the model, exactly. For models too costly to search a whole collection with (ColBERT
MaxSim on a CPU, cross-encoders)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import torch

from xpretrieval.core.checks import check_range
from xpretrieval.core.device import Precision, autocast
from xpretrieval.core.errors import DataError
from xpretrieval.core.progress import progress
from xpretrieval.data.collection import Collection
from xpretrieval.data.run import Run, read_trec_run
from xpretrieval.models.base import BiEncoder, PairScorer
from xpretrieval.models.encoding import Batching, encode_texts
from xpretrieval.retrieval.passages import documents_from_passages, passage_candidates
from xpretrieval.retrieval.retrieve import Retrieval

logger = logging.getLogger(__name__)


@dataclass
class FirstStage:
    """Where candidates come from: a TREC run over the collection's queries, the scoreddocs
    of an ir-datasets id, or BM25 computed on the collection."""

    run_file: str | None = None  # a TREC run file
    scoreddocs: str | None = None  # an ir-datasets id with scoreddocs, e.g. msmarco-passage/dev
    top_k: int = 0  # candidates per query; 0: none (for evaluation: search, do not re-rank)
    # accept a run_file or scoreddocs that ranks only some of the queries: the others get no
    # candidates (in evaluation they score 0). Off: such a first stage is refused
    partial: bool = False

    def __post_init__(self) -> None:
        check_range("top_k", self.top_k, at_least=0)
        if self.run_file is not None and self.scoreddocs is not None:
            raise ValueError(
                f"set at most one of run_file and scoreddocs (neither: BM25), got "
                f"run_file={self.run_file!r}, scoreddocs={self.scoreddocs!r}"
            )

    @property
    def enabled(self) -> bool:
        return self.top_k > 0

    def run(self, collection: Collection, key: str) -> Run:
        """Each query's first `top_k` candidates (those naming known documents). A run file or
        scoreddocs must rank every query of the collection unless `partial`; `key` is this
        first stage's place in the config, which errors name."""
        if self.run_file is not None:
            run = read_trec_run(self.run_file)
        elif self.scoreddocs is not None:
            from xpretrieval.data.irds import load_scoreddocs

            run = load_scoreddocs(self.scoreddocs)
        else:
            from xpretrieval.models.bm25 import Bm25

            logger.info("First stage: BM25 top %d on %s", self.top_k, collection.name)
            run, _ = Bm25().build().rank(collection, self.top_k)
        known = collection.documents
        candidates = {
            query_id: [(d, s) for d, s in run.get(query_id, []) if d in known][: self.top_k]
            for query_id in collection.queries
        }
        if self.run_file is not None or self.scoreddocs is not None:
            self._check_coverage(candidates, collection, key)
        return candidates

    def _check_coverage(self, candidates: Run, collection: Collection, key: str) -> None:
        """Refuse a first stage that ranks none of the queries, or (unless `partial`) not all."""
        source = (
            f"{key}.run_file={self.run_file}"
            if self.run_file
            else (f"{key}.scoreddocs={self.scoreddocs}")
        )
        missing = [query_id for query_id, ranking in candidates.items() if not ranking]
        total = len(candidates)
        if len(missing) == total:
            raise DataError(
                f"{source} ranks none of the {total} queries of {collection.name} (or only "
                "documents it lacks): it was made for another collection or split"
            )
        logger.info(
            "%s ranks %d of %d queries of %s", source, total - len(missing), total, collection.name
        )
        if missing and not self.partial:
            raise DataError(
                f"{source} ranks {total - len(missing)} of the {total} queries of "
                f"{collection.name}; {len(missing)} have no candidate (e.g. {missing[0]!r}). "
                f"Complete the first stage, or accept it with {key}.partial=true (evaluated "
                "queries without candidates score 0)"
            )
        if missing:
            logger.warning(
                "%s: %d of %d queries have no candidate (%s.partial=true)",
                source,
                len(missing),
                total,
                key,
            )


def rerank_candidates(
    model: BiEncoder | PairScorer,
    collection: Collection,
    candidates: Run,
    batching: Batching,
    device: torch.device,
    precision: Precision = Precision.auto,
) -> Retrieval:
    """Each query's `candidates`, ordered by the model's scores; with the collection's
    `passages`, each candidate is scored from its passages' scores (every passage scored)."""
    start = time.perf_counter()
    windows = collection.windows
    if windows is not None:  # the candidates' passages, re-ranked as documents, then merged
        candidates = passage_candidates(candidates, windows)
        collection = replace(collection, documents=windows, passages=None)
    if isinstance(model, PairScorer):  # reads each (query, candidate) pair
        run = _score_pairs(model, collection, candidates, batching.batch_size, device, precision)
        needed = {doc for ranking in candidates.values() for doc, _ in ranking}
    else:
        needed, run = _score_representations(
            model, collection, candidates, batching, device, precision
        )
    if windows is not None:
        run = documents_from_passages(run, windows)
    statistics = {
        "candidates_per_query": sum(len(r) for r in run.values()) / max(1, len(run)),
        # share of the queries the first stage gave candidates (below 1 only with partial=true)
        "first_stage_coverage": sum(bool(r) for r in candidates.values()) / max(1, len(run)),
        "documents_encoded" if windows is None else "passages_encoded": len(needed),
        "rerank_seconds": time.perf_counter() - start,  # encoding and scoring
    }
    return Retrieval(run, statistics)


def _score_representations(
    model: BiEncoder,
    collection: Collection,
    candidates: Run,
    batching: Batching,
    device: torch.device,
    precision: Precision,
) -> tuple[list[str], Run]:
    """Encode every candidate once and every query, then score each query's candidates."""
    needed = sorted({doc for ranking in candidates.values() for doc, _ in ranking})
    row = {doc: i for i, doc in enumerate(needed)}
    settings = {"batching": batching, "device": device, "precision": precision}
    texts = [collection.documents[doc] for doc in needed]
    encoder = model.text_encoder(is_query=False)
    documents = encode_texts(encoder, texts, desc="encode candidates", **settings)
    query_ids = list(collection.queries)
    query_texts = [collection.queries[q] for q in query_ids]
    encoder = model.text_encoder(is_query=True)
    queries = encode_texts(encoder, query_texts, desc="encode queries", **settings)
    run: Run = {}
    with torch.inference_mode():
        for i, query_id in enumerate(query_ids):
            docs = [doc for doc, _ in candidates[query_id]]
            rows = torch.tensor([row[doc] for doc in docs], dtype=torch.long)
            scores = model.score(queries[i : i + 1], documents[rows])[0].tolist() if docs else []
            run[query_id] = _ranked(docs, scores)
    return needed, run


def _score_pairs(
    model: PairScorer,
    collection: Collection,
    candidates: Run,
    batch_size: int,
    device: torch.device,
    precision: Precision,
) -> Run:
    """Score each (query, candidate) pair, `batch_size` pairs at a time."""
    run: Run = {}
    with torch.inference_mode(), autocast(device, precision):
        for query_id in progress(collection.queries, desc="re-rank", unit="query"):
            docs = [doc for doc, _ in candidates[query_id]]
            scores: list[float] = []
            for start in range(0, len(docs), batch_size):
                texts = [collection.documents[d] for d in docs[start : start + batch_size]]
                scores += model.score_texts([collection.queries[query_id]], texts)[0].tolist()
            run[query_id] = _ranked(docs, scores)
    return run


def _ranked(docs: list[str], scores: list[float]) -> list[tuple[str, float]]:
    return sorted(zip(docs, scores, strict=True), key=lambda item: -item[1])
