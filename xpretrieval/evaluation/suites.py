"""Benchmark suites: a list of test collections measured under one loaded model (the config
group `suite`), their short names, an optional nano cut of each (a fixed number of judged
queries and a pool of documents: the NanoBEIR recipe), and the mean over collections."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.data.collection import Collection
from xpretrieval.data.dataset import Split
from xpretrieval.models.bm25 import Bm25

logger = logging.getLogger(__name__)

BEIR_FILES = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")


@dataclass
class NanoCut:
    """A smaller copy of each collection, the same for the same seed: `queries` judged queries
    (those with a relevant document, drawn with the run's seed) and, with `bm25_pool`, a corpus
    cut to their judged documents plus BM25's top `bm25_pool` documents for each of them over
    the full corpus. Null keeps all queries / the whole corpus."""

    queries: int | None = None  # judged queries kept per collection; null: all
    bm25_pool: int | None = None  # BM25 documents per kept query added to the judged ones

    def __post_init__(self) -> None:
        check_range("queries", self.queries, at_least=1, optional=True)
        check_range("bm25_pool", self.bm25_pool, at_least=0, optional=True)

    @property
    def enabled(self) -> bool:
        return self.queries is not None or self.bm25_pool is not None

    def apply(self, collection: Collection, seed: int) -> Collection:
        """`collection` cut to the kept queries and, with `bm25_pool`, to their pool; its
        other settings (passages) kept."""
        queries = self._kept_queries(collection, seed)
        qrels = {query_id: collection.qrels[query_id] for query_id in queries}
        cut = replace(collection, queries=queries, qrels=qrels)
        if self.bm25_pool is None:
            return cut
        pooled = {doc_id for judged in qrels.values() for doc_id in judged}
        if self.bm25_pool > 0:
            run, _ = Bm25().build().rank(cut, self.bm25_pool)
            pooled.update(doc_id for ranking in run.values() for doc_id, _ in ranking)
        documents = {d: collection.documents[d] for d in collection.documents if d in pooled}
        return replace(cut, documents=documents)

    def _kept_queries(self, collection: Collection, seed: int) -> dict[str, str]:
        """`queries` of the queries with a relevant judgement, drawn with `seed` from their
        sorted ids (all of them when they are fewer); without `queries`, every query."""
        if self.queries is None:
            return collection.queries
        relevant = sorted(q for q, judged in collection.qrels.items() if max(judged.values()) > 0)
        if len(relevant) <= self.queries:
            logger.info("%s: keeps all %d relevant queries", collection.name, len(relevant))
            kept = set(relevant)
        else:
            kept = set(random.Random(seed).sample(relevant, self.queries))
        return {query_id: text for query_id, text in collection.queries.items() if query_id in kept}


@register("suite", "suite")
@dataclass
class SuiteConfig:
    """Test collections evaluated one at a time under one loaded model: ir-datasets ids with
    documents, queries and qrels (`beir/scifact/test`) or BEIR folders (their `qrels/test.tsv`).
    Off while `collections` is empty (the experiment's `dataset.test` is evaluated instead)."""

    collections: list[str] = field(default_factory=list)
    nano: NanoCut = field(default_factory=NanoCut)
    on_disk: bool = False  # read each collection's documents when needed (see Split.on_disk)

    def __post_init__(self) -> None:
        names: dict[str, str] = {}
        for entry in self.collections:
            _check_source(entry)
            name = collection_name(entry)
            if name in names:
                raise ValueError(
                    f"collections: {names[name]!r} and {entry!r} are both named {name!r} "
                    "(their results would share suite/<name>/); rename one folder"
                )
            names[name] = entry

    @property
    def enabled(self) -> bool:
        return bool(self.collections)

    @property
    def names(self) -> list[str]:
        return [collection_name(entry) for entry in self.collections]

    def split(self, entry: str) -> Split:
        """Where `entry` is read from: a BEIR folder's test split, or an ir-datasets id."""
        if _is_folder(entry):
            return Split(beir_folder=entry, split="test", on_disk=self.on_disk)
        return Split(ir_datasets=entry, on_disk=self.on_disk)

    def load(self, entry: str, seed: int) -> Collection:
        """One collection of the suite, read and (with `nano`) cut with `seed`."""
        collection = self.split(entry).load()
        return self.nano.apply(collection, seed) if self.nano.enabled else collection

    def load_all(self, seed: int) -> Iterator[tuple[str, Collection]]:
        """(name, collection) of every collection, read one at a time."""
        for entry in self.collections:
            yield collection_name(entry), self.load(entry, seed)


def collection_name(entry: str) -> str:
    """A collection's short name, its folder below `suite/`: a BEIR folder's name, or an
    ir-datasets id without `beir/` and without a final `/test` or `/judged`
    (`beir/scifact/test` -> `scifact`, `beir/cqadupstack/android` -> `cqadupstack/android`)."""
    if _is_folder(entry):
        return Path(entry).resolve().name
    name = entry.removeprefix("beir/")
    for tail in ("/test", "/judged"):
        name = name.removesuffix(tail)
    return name


def group_of(name: str) -> str:
    """The group a collection counts in for the mean: the part of its name before a `/`
    (the 12 `cqadupstack/<forum>` collections make one, as BEIR averages them)."""
    return name.split("/", 1)[0]


def suite_mean(values: dict[str, dict[str, float]]) -> dict[str, float]:
    """The mean of each measure over collections (by name), each group (`group_of`) counted
    once as the mean of its collections."""
    groups: dict[str, list[dict[str, float]]] = {}
    for name, measures in values.items():
        groups.setdefault(group_of(name), []).append(measures)
    means = [
        {m: sum(row[m] for row in rows) / len(rows) for m in rows[0]} for rows in groups.values()
    ]
    return {m: sum(row[m] for row in means) / len(means) for m in means[0]}


def _is_folder(entry: str) -> bool:
    """A path (absolute, starting with `.`, or an existing folder) rather than an id."""
    return entry.startswith(("/", ".")) or Path(entry).is_dir()


def _check_source(entry: str) -> None:
    """Refuse, before any model loads, a folder without the BEIR files or an id that
    ir-datasets does not know or that lacks documents, queries or qrels."""
    if _is_folder(entry):
        missing = [name for name in BEIR_FILES if not (Path(entry) / name).is_file()]
        if missing:
            raise ValueError(
                f"collections: BEIR folder {entry!r} lacks {', '.join(missing)} (a suite "
                "measures a folder's corpus.jsonl, queries.jsonl and qrels/test.tsv)"
            )
        return
    import ir_datasets  # only for ids: a suite of folders never imports it

    if entry not in ir_datasets.registry:
        raise ValueError(
            f"collections: {entry!r} is neither a folder nor an ir-datasets id (e.g. "
            "beir/scifact/test, or a path starting with / or ./)"
        )
    dataset = ir_datasets.registry[entry]
    parts = (("documents", dataset.has_docs), ("queries", dataset.has_queries))
    lacking = [part for part, has in (*parts, ("qrels", dataset.has_qrels)) if not has()]
    if lacking:
        raise ValueError(
            f"collections: ir-datasets id {entry!r} has no {', '.join(lacking)}; name its "
            "test split (e.g. beir/nfcorpus/test)"
        )
