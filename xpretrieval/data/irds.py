"""Read collections, first-stage rankings (`scoreddocs`) and preference triples (`docpairs`)
through ir-datasets (`ir_datasets.load`), which caches and downloads them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from xpretrieval.data.records import Qrels, check_id
from xpretrieval.data.run import Run
from xpretrieval.errors import DataError
from xpretrieval.progress import progress

logger = logging.getLogger(__name__)


def _load(dataset_id: str) -> Any:
    import ir_datasets

    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        raise DataError(
            f"unknown ir-datasets id {dataset_id!r} (see https://ir-datasets.com for the ids)"
        ) from None


def read_ir_dataset(dataset_id: str) -> tuple[dict[str, str], dict[str, str], Qrels]:
    """The documents, queries and qrels of an ir-datasets id such as `beir/scifact/test`;
    `Collection.from_ir_datasets` checks them into a collection."""
    dataset = _load(dataset_id)
    lacking = [
        part
        for part, present in (
            ("documents", dataset.has_docs()),
            ("queries", dataset.has_queries()),
            ("qrels", dataset.has_qrels()),
        )
        if not present
    ]
    if lacking:
        raise DataError(
            f"ir-datasets id {dataset_id!r} has no {', '.join(lacking)}; "
            "use an id with a split, e.g. beir/scifact/test"
        )
    logger.info("Loading %s through ir-datasets", dataset_id)
    where = f"ir-datasets {dataset_id}"
    documents = {check_id(d.doc_id, where): d.default_text() for d in dataset.docs_iter()}
    queries = {check_id(q.query_id, where): q.default_text() for q in dataset.queries_iter()}
    qrels: Qrels = {}
    for qrel in dataset.qrels_iter():
        judged = qrels.setdefault(qrel.query_id, {})
        if judged.get(qrel.doc_id, qrel.relevance) != qrel.relevance:
            raise DataError(
                f"{where}: query {qrel.query_id!r} and document {qrel.doc_id!r} are judged twice "
                f"with grades {judged[qrel.doc_id]} and {qrel.relevance}; which one is meant is "
                "unknown"
            )
        judged[qrel.doc_id] = qrel.relevance
    return documents, queries, qrels


def load_scoreddocs(dataset_id: str) -> Run:
    """The first-stage ranking an ir-datasets id ships (`scoreddocs`, e.g. MS MARCO's BM25 top
    1000 in `msmarco-passage/train`), each query's documents best first."""
    dataset = _load(dataset_id)
    if not dataset.has_scoreddocs():
        raise DataError(f"ir-datasets id {dataset_id!r} has no scoreddocs (a first-stage ranking)")
    run: Run = {}
    for scored in progress(dataset.scoreddocs_iter(), desc="scoreddocs", unit="docs"):
        run.setdefault(scored.query_id, []).append((scored.doc_id, scored.score))
    for ranking in run.values():
        ranking.sort(key=lambda item: -item[1])
    return run


def iter_docpairs(dataset_id: str) -> Iterator[tuple[str, str, str]]:
    """The (query, preferred document, other document) triples of an ir-datasets id
    (`docpairs`, e.g. `msmarco-passage/train/triples-small`), streamed."""
    dataset = _load(dataset_id)
    if not dataset.has_docpairs():
        raise DataError(
            f"ir-datasets id {dataset_id!r} has no docpairs (query, preferred, other document) "
            "triples; e.g. msmarco-passage/train/triples-small has"
        )
    for pair in progress(dataset.docpairs_iter(), desc="docpairs", unit="pairs"):
        yield pair.query_id, pair.doc_id_a, pair.doc_id_b
