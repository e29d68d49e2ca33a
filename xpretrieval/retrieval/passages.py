"""Documents ranked from their passages' scores (`dataset.<split>.passages`): a search over
passages deep enough to rank `k` documents, passage scores combined per document (max, first,
sum), and a check of how many windows a model still cuts. Runs stay per document."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse
import torch

from xpretrieval.data.passages import Aggregate, PassageWindows
from xpretrieval.data.run import Run
from xpretrieval.models.base import BiEncoder
from xpretrieval.models.encoding import Reps
from xpretrieval.retrieval.index import SearchIndex

logger = logging.getLogger(__name__)

CHECKED_WINDOWS = 256  # full windows tokenised to tell how many a model cuts
QUERY_BLOCK = 1024  # queries searched at once over passages


def document_ranking(
    hits: Iterable[tuple[Any, float]], aggregate: Aggregate, k: int
) -> list[tuple[Any, float]]:
    """A query's `k` best documents, best first, from its passages' `(document, score)` hits:
    each document scored by `aggregate` over its hits (ties in the order first hit)."""
    scores: dict[Any, float] = {}
    for document, score in hits:
        seen = scores.get(document)
        scores[document] = score if seen is None else aggregate.combine(seen, score)
    return sorted(scores.items(), key=lambda item: -item[1])[:k]


def search_passages(
    searcher: SearchIndex,
    queries: Reps,
    query_ids: list[str],
    windows: PassageWindows,
    k: int,
) -> tuple[Run, float]:
    """Each query's `k` best documents from a search over `windows`, and the mean passages
    searched per query. The search starts at `k` x the mean windows per document and doubles,
    for the queries still short, until their passages name `k` documents (or every passage is
    searched, or the index returns fewer passages than asked: an approximate index whose reach
    is spent): then max is exact (a document's best passage is its first hit), and sum adds
    the scores of the document's passages among those searched. Queries go `QUERY_BLOCK` at a
    time, so that `[queries, depth]` results stay small."""
    run: Run = {}
    depths: list[int] = []
    for start in range(0, len(query_ids), QUERY_BLOCK):
        block = list(range(start, min(start + QUERY_BLOCK, len(query_ids))))
        found, searched = _search_deeper(searcher, _take(queries, block), windows, k)
        run.update(zip((query_ids[i] for i in block), found, strict=True))
        depths += searched
    return run, sum(depths) / max(1, len(depths))


def _search_deeper(
    searcher: SearchIndex, queries: Reps, windows: PassageWindows, k: int
) -> tuple[list[list[tuple[str, float]]], list[int]]:
    """`search_passages` of a block of queries: their rankings and the depth each reached."""
    needed = min(k, windows.document_count)
    depth = min(len(windows), -(-k * len(windows) // max(1, windows.document_count)))
    pending = list(range(queries.shape[0]))
    rankings: list[list[tuple[str, float]]] = [[] for _ in pending]
    searched = [0 for _ in pending]
    while pending:
        found_scores, rows = searcher.search(_take(queries, pending), depth)
        documents = windows.document_rows(rows.cpu().numpy())
        scores = found_scores.float().cpu().numpy()
        short = []
        for i, query in enumerate(pending):
            kept = documents[i] >= 0  # approximate indexes may return fewer rows (-1)
            # fewer rows than asked: the index holds no more for this query (IVF's probed lists
            # are spent), so a deeper search would only grow towards every passage
            deeper = depth < len(windows) and bool(kept.all())
            if len(np.unique(documents[i][kept])) < needed and deeper:
                short.append(query)
                continue
            hits = zip(documents[i][kept].tolist(), scores[i][kept].tolist(), strict=True)
            ranking = document_ranking(hits, windows.passages.aggregate, k)
            rankings[query] = [(windows.doc_ids[doc], score) for doc, score in ranking]
            searched[query] = depth
        pending, depth = short, min(len(windows), 2 * depth)
    return rankings, searched


def passage_candidates(candidates: Run, windows: PassageWindows) -> Run:
    """Each query's candidate documents as their passages (each with its document's score), to
    re-rank them passage by passage."""
    return {
        query: [(passage, score) for doc, score in ranking for passage in windows.passage_ids(doc)]
        for query, ranking in candidates.items()
    }


def documents_from_passages(run: Run, windows: PassageWindows) -> Run:
    """A run over passages (re-ranked candidates) as a run over their documents, each scored by
    the passages' `aggregate`; every document is kept."""
    aggregate = windows.passages.aggregate
    return {
        query: document_ranking(
            ((windows.document_of(p), score) for p, score in ranking), aggregate, len(ranking)
        )
        for query, ranking in run.items()
    }


def cut_windows(model: BiEncoder, windows: PassageWindows) -> float:
    """The share of a sample of full windows that the model's `doc_max_length` cuts (a word may
    be several tokens), with a warning if any is: their last words are not read."""
    sample = windows.first_windows(CHECKED_WINDOWS)
    if not sample:
        return 0.0
    tokens = model.tokenize(sample, is_query=False)
    cut = sum(len(sequence) >= model.max_document_length for sequence in tokens) / len(sample)
    if cut:
        logger.warning(
            "%.0f%% of %d windows of %d words reach model.doc_max_length=%d tokens, so their "
            "last words are cut; lower passages.length or raise model.doc_max_length",
            100 * cut,
            len(sample),
            windows.passages.length,
            model.max_document_length,
        )
    return cut


def _take(reps: Reps, rows: list[int]) -> Reps:
    """The representations of some queries (sparse rows or a tensor)."""
    if scipy.sparse.issparse(reps):
        return reps[np.asarray(rows)]
    return reps[torch.as_tensor(rows, device=reps.device)]
