"""The documents, queries and relevance judgements (qrels) of one split."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from xpretrieval.core.errors import DataError
from xpretrieval.data.beir import read_beir_folder
from xpretrieval.data.documents import document_texts
from xpretrieval.data.examples import TrainingExamples
from xpretrieval.data.irds import read_ir_dataset
from xpretrieval.data.passages import Passages, PassageWindows
from xpretrieval.data.records import Qrels

logger = logging.getLogger(__name__)


@dataclass
class Collection:
    """One split of a test collection: its documents in memory, or read from disk on demand
    (`OnDiskDocuments`, for collections larger than memory).

    `queries` holds only the queries that have at least one judgement, so that evaluation
    and sampling see the same query set that the metrics are computed over. A training split
    read from a Hub dataset has its own examples (`training`) instead: samplers draw from
    them, and there is nothing to search or measure. With `passages`, search encodes each
    document as windows (`searched_documents`) and still ranks documents.
    """

    name: str
    documents: Mapping[str, str]
    queries: dict[str, str]
    qrels: Qrels
    training: TrainingExamples | None = None
    passages: Passages | None = None  # long documents read as windows (dataset.<split>.passages)

    @cached_property
    def windows(self) -> PassageWindows | None:
        """The documents' passages when `passages` cuts them (counted once), else None."""
        if self.passages is None:
            return None
        self._check_collection("cutting its documents into passages", "drop passages")
        return self.passages.windows(self.documents)

    def searched_documents(self) -> Mapping[str, str]:
        """What search encodes and indexes: the documents, or their passages (`windows`)."""
        self._check_collection("searching it", "search an ir_datasets id or a beir_folder")
        return self.documents if self.windows is None else self.windows

    @classmethod
    def from_training(cls, examples: TrainingExamples) -> Collection:
        """A training split that is its examples alone (a Hub dataset's rows)."""
        return cls(examples.name, documents={}, queries={}, qrels={}, training=examples)

    @classmethod
    def from_beir(
        cls, folder: str | Path, split: str = "test", on_disk: bool = False
    ) -> Collection:
        """A BEIR-layout folder: corpus.jsonl, queries.jsonl and `qrels/<split>.tsv`; `on_disk`:
        documents read from corpus.jsonl when needed rather than held in memory."""
        name, documents, queries, qrels = read_beir_folder(folder, split, on_disk)
        try:
            return cls.checked(name, documents, queries, qrels)
        except DataError as error:  # say which files the collection came from
            raise DataError(f"{error} (in {folder}, with qrels/{split}.tsv)") from None

    @classmethod
    def from_ir_datasets(cls, dataset_id: str, on_disk: bool = False) -> Collection:
        """An ir-datasets id with documents, queries and qrels, e.g. beir/scifact/test;
        `on_disk`: documents read through its docstore when needed."""
        return cls.checked(dataset_id, *read_ir_dataset(dataset_id, on_disk))

    @classmethod
    def checked(
        cls, name: str, documents: Mapping[str, str], queries: dict[str, str], qrels: Qrels
    ) -> Collection:
        """Build a collection, dropping judgements on unknown ids (with a warning) and failing
        when no judgement remains."""
        if not documents:
            raise DataError(f"{name}: the collection has no documents")
        unknown_queries = sum(len(docs) for qid, docs in qrels.items() if qid not in queries)
        unknown_docs = 0
        kept: Qrels = {}
        for qid, judged in qrels.items():
            if qid not in queries:
                continue
            known = {doc_id: grade for doc_id, grade in judged.items() if doc_id in documents}
            unknown_docs += len(judged) - len(known)
            if known:
                kept[qid] = known
        if unknown_queries or unknown_docs:
            logger.warning(
                "%s: ignored %d judgements naming unknown queries and %d naming unknown documents",
                name,
                unknown_queries,
                unknown_docs,
            )
        if not kept:
            raise DataError(f"{name}: no relevance judgement names a known query and document")
        judged_queries = {qid: queries[qid] for qid in kept}
        return cls(name=name, documents=documents, queries=judged_queries, qrels=kept)

    def check_measurable(self) -> None:
        """Fail unless some judgement is relevant (grade >= 1, as ir-measures counts them):
        otherwise every measure is 0 whatever the ranking. Queries with no relevant
        document score 0 and lower the mean: they are counted in a warning."""
        self._check_collection(
            "measuring a ranking", "measure on an ir_datasets id or a beir_folder"
        )
        unjudged = [q for q, judged in self.qrels.items() if max(judged.values()) < 1]
        if len(unjudged) == len(self.qrels):
            raise DataError(
                f"{self.name}: every judgement is non-relevant (grade < 1), so every measure "
                "would be 0 whatever the ranking; check the qrels of this split"
            )
        if unjudged:
            logger.warning(
                "%s: %d of %d queries have no relevant document (e.g. %s); they score 0",
                self.name,
                len(unjudged),
                len(self.qrels),
                unjudged[0],
            )

    def document_texts(self) -> Sequence[str]:
        """The documents' texts in the order of `documents` (on disk: read as they are used)."""
        self._check_collection(
            "reading its documents", "initialise without them (e.g. model.query_weights_init=ones)"
        )
        return document_texts(self.documents)

    def hold_out(self, n: int, seed: int) -> tuple[Collection, Collection]:
        """(the collection without `n` of its queries, those `n` queries), drawn with `seed`;
        both keep every document."""
        self._check_collection("holding out validation queries", "validate on dataset.dev")
        ids = sorted(self.queries)
        if not 0 < n < len(ids):
            raise DataError(
                f"{self.name}: cannot hold out {n} of its {len(ids)} judged queries; "
                "hold out at least one and leave at least one to train on"
            )
        random.Random(seed).shuffle(ids)
        held = set(ids[:n])

        def part(name: str, keep: bool) -> Collection:
            queries = {q: text for q, text in self.queries.items() if (q in held) != keep}
            qrels = {q: judged for q, judged in self.qrels.items() if q in queries}
            return replace(self, name=name, queries=queries, qrels=qrels)

        return part(self.name, keep=True), part(f"{self.name} (held out)", keep=False)

    def subsample_documents(self, n: int, seed: int) -> Collection:
        """The collection with every judged document and others drawn with `seed`, `n` in
        all (or every judged one, if they are more)."""
        judged = {doc_id for docs in self.qrels.values() for doc_id in docs}
        others = sorted(set(self.documents) - judged)
        random.Random(seed).shuffle(others)
        kept = judged | set(others[: max(0, n - len(judged))])
        if len(judged) > n:
            logger.warning("%s: %d judged documents are more than %d", self.name, len(judged), n)
        documents = {doc_id: text for doc_id, text in self.documents.items() if doc_id in kept}
        return replace(self, documents=documents)

    def _check_collection(self, doing: str, instead: str) -> None:
        """Refuse `doing` on a training split made of examples: no documents, no judgements."""
        if self.training is not None:
            raise DataError(
                f"{self.name}: training examples from a dataset are no collection (no "
                f"documents, no relevance judgements), so {doing} is impossible; {instead}"
            )

    def __repr__(self) -> str:
        if self.training is not None:
            return f"Collection({self.name!r}: {len(self.training)} training examples)"
        read = "" if self.passages is None else f", read as {self.passages.describe()}"
        return (
            f"Collection({self.name!r}: {len(self.documents)} documents, {len(self.queries)} "
            f"queries, {sum(len(j) for j in self.qrels.values())} judgements{read})"
        )
