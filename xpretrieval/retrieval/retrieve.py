"""Retrieval: encode a collection into an index, then rank the top-k for every query."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse
import torch
from torch import Tensor

from xpretrieval.core.device import Precision
from xpretrieval.core.errors import ConfigError
from xpretrieval.data.collection import Collection
from xpretrieval.data.documents import document_ids, document_texts
from xpretrieval.data.passages import PassageWindows
from xpretrieval.data.run import Run
from xpretrieval.models.base import BiEncoder, Ranker, SparseBiEncoder, TermWeighted
from xpretrieval.models.encoding import (
    Batching,
    Reps,
    encode_batches,
    encode_texts,
    sparse_rows,
)
from xpretrieval.retrieval.exact import RunningTopK
from xpretrieval.retrieval.index import IndexConfig, SearchIndex
from xpretrieval.retrieval.passages import cut_windows, search_passages
from xpretrieval.retrieval.saved import index_provenance, open_index, save_index
from xpretrieval.retrieval.shards import Sharding

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retrieval:
    """A run and how it was obtained: index size, active dimensions, search latency."""

    run: Run
    statistics: dict[str, float]


def retrieve(
    model: BiEncoder | Ranker,
    collection: Collection,
    index: IndexConfig,
    k: int,
    batching: Batching,
    device: torch.device,
    precision: Precision = Precision.auto,
    save_to: Path | None = None,
    sharding: Sharding | None = None,
) -> Retrieval:
    """Index the collection's documents with `index` (or open the saved one it names), save it
    to `save_to` if given, and rank the top-k for every query. A model that ranks texts
    itself (BM25: `rank(collection, k)`) does so, without encoding or index. With `sharding`,
    documents are encoded in shards on disk (resumable, on several devices) first. With the
    collection's `passages`, its documents' windows are indexed and searched, and the run
    ranks documents by their passages' scores."""
    if k < 1:  # k=0 would rank nothing and measure 0, however good the model
        raise ConfigError(f"k must be >= 1 (documents ranked per query), got {k}")
    if isinstance(model, Ranker):
        return _ranked_by_itself(model, collection, k)
    documents = collection.searched_documents()  # with passages: their windows
    windows = documents if isinstance(documents, PassageWindows) else None
    doc_ids, query_ids = document_ids(documents), list(collection.queries)
    settings = {"batching": batching, "device": device, "precision": precision}
    term_weights = model.term_weights if isinstance(model, TermWeighted) else None
    doc_active: list[int] = []
    query_texts = list(collection.queries.values())
    sparse = issubclass(index.serves, SparseBiEncoder)  # handed over as sparse rows
    queries = encode_texts(
        model.text_encoder(is_query=True),
        query_texts,
        desc="encode queries",
        sparse=sparse,
        **settings,
    )
    exact: RunningTopK | None = None
    # what the index depends on (every weight and text hashed): computed once, when needed
    needs_provenance = index.load is not None or sharding is not None or save_to is not None
    provenance = index_provenance(model, documents) if needs_provenance else {}
    if index.load is not None:
        logger.info("Searching the saved index %s", index.load)
        searcher = open_index(index, Path(index.load), provenance, model.score)
    else:
        texts = document_texts(documents)
        batches = _encoded_documents(model, texts, sharding, provenance, settings)
        if index.approximate and index.recall_queries:  # its recall, measured on the way
            sample = _dense(queries[: index.recall_queries], device)
            exact = RunningTopK(len(sample), min(k, len(doc_ids)), sample)
            batches = _tracking_exact(batches, sample, model.score, exact)
        # as the index reads them: sparse rows, or tensors (shards hold sparse models' rows)
        batches = (
            (rows, sparse_rows(reps) if sparse else _dense(reps, device)) for rows, reps in batches
        )
        if term_weights is not None:
            batches = _counting_active(batches, term_weights, doc_active)
        searcher = index.build(batches, len(doc_ids), model.score)
        if save_to is not None:
            save_index(index, searcher, save_to, provenance)
    start = time.perf_counter()
    rows: Tensor | None = None  # the rows found for each query (documents, not passages)
    with torch.inference_mode():
        if windows is None:
            scores, rows = searcher.search(queries, k)
            run = _documents_found(scores, rows, query_ids, doc_ids)
        else:
            run, depth = search_passages(searcher, queries, query_ids, windows, k)
    seconds = time.perf_counter() - start
    statistics = {
        **searcher.statistics(),
        "search_seconds": seconds,
        "queries_per_second": len(query_ids) / seconds if seconds > 0 else float("inf"),
    }
    if exact is not None:
        statistics.update(_recall_vs_exact(searcher, queries, rows, exact, k))
    if term_weights is not None:
        statistics.update(_sparsity(term_weights, queries, doc_active, sparse))
    if windows is not None:
        statistics.update(_passage_statistics(model, windows, depth))
    return Retrieval(run, statistics)


def _passage_statistics(
    model: BiEncoder, windows: PassageWindows, depth: float
) -> dict[str, float]:
    """How deep the passages were searched, and the share of windows the model still cuts."""
    return {"passages_searched_per_query": depth, "passages_cut_share": cut_windows(model, windows)}


def _ranked_by_itself(model: Ranker, collection: Collection, k: int) -> Retrieval:
    """The run of a model that ranks whole texts itself (BM25), timed."""
    if collection.passages is not None:  # the Python API's; configs are checked earlier
        raise ConfigError(
            f"passages: a {type(model).__name__} model ranks whole documents itself, never "
            "their passages; search a collection without passages"
        )
    start = time.perf_counter()
    run, statistics = model.rank(collection, k)
    return Retrieval(run, {**statistics, "search_seconds": time.perf_counter() - start})


def _recall_vs_exact(
    searcher: SearchIndex, queries: Reps, rows: Tensor | None, exact: RunningTopK, k: int
) -> dict[str, float]:
    """The share of the exact top-k that the index found for the sample queries; `rows` None
    (passages): the index's recall of passages, searched again at the depth measured, under
    its own name (a recall of passages is not one of documents)."""
    name = f"recall@{k}_vs_exact"
    if rows is None:
        with torch.inference_mode():
            rows = searcher.search(queries[: len(exact.rows)], exact.rows.shape[1])[1]
        name = f"passage_{name}"
    return {name: _overlap(rows[: len(exact.rows)], exact.rows), "recall_queries": len(exact.rows)}


def _documents_found(
    scores: Tensor, rows: Tensor, query_ids: list[str], doc_ids: Sequence[str]
) -> Run:
    """The run of a search's `[n_queries, k]` scores and document rows; approximate indexes
    may return fewer than k documents (row -1)."""
    scores_list, rows_list = scores.cpu().tolist(), rows.cpu().tolist()
    return {
        query_id: [
            (doc_ids[row], score)
            for row, score in zip(rows_list[i], scores_list[i], strict=True)
            if row >= 0
        ]
        for i, query_id in enumerate(query_ids)
    }


def _encoded_documents(
    model: BiEncoder,
    documents: Sequence[str],
    sharding: Sharding | None,
    provenance: dict,
    settings: dict,
) -> Iterator[tuple[Tensor, Reps]]:
    """(document rows, representations) batches of the `documents`' texts: encoded now, or in
    shards on disk first."""
    if sharding is None:
        encoder = model.text_encoder(is_query=False)
        return encode_batches(encoder, documents, desc="encode documents", **settings)
    sharding.encode(model, documents, settings["batching"], settings["precision"], provenance)
    return sharding.read(len(documents))


def _sparsity(
    term_weights: Callable[[Tensor], Tensor], queries: Reps, doc_active: list[int], sparse: bool
) -> dict[str, float]:
    """Sparse models' mean active terms and sparsity ratio, for queries and documents."""
    vocabulary = queries.shape[1] if sparse else term_weights(queries[:1]).shape[1]
    statistics = {}
    for side, counts in {"query": _active_terms(term_weights, queries), "doc": doc_active}.items():
        if counts:
            statistics[f"{side}_active_dims"] = _mean(counts)
            statistics[f"{side}_sparsity_ratio"] = 1 - _mean(counts) / vocabulary
    return statistics


def _active_terms(term_weights: Callable[[Tensor], Tensor], reps: Reps) -> list[int]:
    """The number of non-zero vocabulary terms of each representation (sparse rows hold the
    term weights' non-zeros only)."""
    if scipy.sparse.issparse(reps):
        return np.diff(reps.indptr).tolist()
    return (term_weights(reps) != 0).sum(dim=1).tolist()


def _dense(reps: Reps, device: torch.device) -> Tensor:
    """Representations as a dense tensor, to score them with the model: sparse rows are
    expanded onto `device`; tensors, already on the model's device, are returned as they are."""
    return torch.from_numpy(reps.toarray()).to(device) if scipy.sparse.issparse(reps) else reps


def _counting_active(
    batches: Iterator[tuple[Tensor, Reps]],
    term_weights: Callable[[Tensor], Tensor],
    counts: list[int],
) -> Iterator[tuple[Tensor, Reps]]:
    """The same batches, appending each document's active terms to `counts` on the way."""
    for rows, reps in batches:
        counts.extend(_active_terms(term_weights, reps))
        yield rows, reps


def _tracking_exact(
    batches: Iterator[tuple[Tensor, Reps]],
    queries: Tensor,
    score: Callable[[Tensor, Tensor], Tensor],
    exact: RunningTopK,
) -> Iterator[tuple[Tensor, Reps]]:
    """The same batches, merging the exact scores of `queries` against each into `exact`."""
    for rows, reps in batches:
        with torch.inference_mode():
            exact.add(score(queries, _dense(reps, queries.device)), rows)
        yield rows, reps


def _overlap(found: Tensor, exact: Tensor) -> float:
    """The fraction of the exact top-k documents that an approximate search returned."""
    hits = sum(len(set(a) & set(b)) for a, b in zip(found.tolist(), exact.tolist(), strict=True))
    return hits / max(exact.numel(), 1)


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0
