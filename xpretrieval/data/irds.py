"""Read collections, first-stage rankings (`scoreddocs`) and preference triples (`docpairs`)
through ir-datasets (`ir_datasets.load`), which caches and downloads them; documents held in
memory or read through its docstore."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from xpretrieval.core.errors import DataError
from xpretrieval.core.progress import progress
from xpretrieval.data.documents import OnDiskDocuments
from xpretrieval.data.records import Qrels, check_id
from xpretrieval.data.run import Run

logger = logging.getLogger(__name__)


def _load(dataset_id: str) -> Any:
    import ir_datasets

    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        raise DataError(
            f"unknown ir-datasets id {dataset_id!r} (see https://ir-datasets.com for the ids)"
        ) from None


def read_ir_dataset(
    dataset_id: str, on_disk: bool = False
) -> tuple[Mapping[str, str], dict[str, str], Qrels]:
    """The documents, queries and qrels of an ir-datasets id such as `beir/scifact/test`;
    `Collection.from_ir_datasets` checks them into a collection. `on_disk`: documents are read
    through the dataset's docstore when needed, not held in memory."""
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
    documents: Mapping[str, str]
    if on_disk:
        documents = DocstoreDocuments(dataset_id)
    else:
        documents = _documents_in_memory(dataset, where)
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


def _documents_in_memory(dataset: Any, where: str) -> dict[str, str]:
    documents: dict[str, str] = {}
    for row, doc in enumerate(dataset.docs_iter(), start=1):
        doc_id = check_id(doc.doc_id, where)
        if doc_id in documents:
            raise DataError(f"{where}, document {row}: duplicate id {doc_id!r}")
        documents[doc_id] = doc.default_text()
    return documents


class DocstoreDocuments(OnDiskDocuments):
    """The documents of an ir-datasets id read through its docstore (random access by id) and
    `docs_iter` (in order), holding only the ids in memory."""

    def __init__(self, dataset_id: str) -> None:
        self.dataset_id = dataset_id
        self._dataset: Any = None
        self._store: Any = None
        self._docstore()  # no docstore: refused before the pass over the ids
        where = f"ir-datasets {dataset_id}"
        ids = progress(self._source().docs_iter(), desc="document ids", unit="docs")
        super().__init__(
            (check_id(doc.doc_id, where) for doc in ids), lambda row: f"{where}, document {row + 1}"
        )

    def _source(self) -> Any:
        """The ir-datasets dataset, loaded once per process."""
        if self._dataset is None:
            self._dataset = _load(self.dataset_id)
        return self._dataset

    def _docstore(self) -> Any:
        if self._store is None:
            try:
                self._store = self._source().docs_store()
            except (AttributeError, NotImplementedError):
                raise DataError(
                    f"ir-datasets id {self.dataset_id!r} has no docstore (documents by id), "
                    "which on_disk reads documents through; set on_disk=false to hold them in "
                    "memory"
                ) from None
        return self._store

    def text_at(self, row: int) -> str:
        return self._docstore().get(self.id_at(row)).default_text()

    def iter_texts(self) -> Iterator[str]:
        return (doc.default_text() for doc in self._source().docs_iter())

    def __getstate__(self) -> dict[str, Any]:  # worker processes load their own
        return {**self.__dict__, "_dataset": None, "_store": None}


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
