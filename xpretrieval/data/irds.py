"""Read a collection through ir-datasets (`ir_datasets.load`), which caches and downloads it."""

from __future__ import annotations

import logging

from xpretrieval.data.collection import Collection, Qrels
from xpretrieval.errors import DataError

logger = logging.getLogger(__name__)


def load_ir_dataset(dataset_id: str) -> Collection:
    """Load the documents, queries and qrels of an ir-datasets id such as `beir/scifact/test`."""
    import ir_datasets

    try:
        dataset = ir_datasets.load(dataset_id)
    except KeyError:
        raise DataError(
            f"unknown ir-datasets id {dataset_id!r} (see https://ir-datasets.com for the ids)"
        ) from None
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
    documents = {doc.doc_id: doc.default_text() for doc in dataset.docs_iter()}
    queries = {query.query_id: query.default_text() for query in dataset.queries_iter()}
    qrels: Qrels = {}
    for qrel in dataset.qrels_iter():
        qrels.setdefault(qrel.query_id, {})[qrel.doc_id] = qrel.relevance
    return Collection.checked(dataset_id, documents, queries, qrels)
