"""Exact (brute-force) top-k search over in-memory representations, in bounded chunks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from xpretrieval.core.progress import progress


class RunningTopK:
    """The k best (score, document row) of each query among the blocks of documents seen so
    far: each block keeps its own top k first, so a merge handles `[queries, 2k]` only."""

    def __init__(self, n_queries: int, k: int, like: Tensor) -> None:
        self.k = k
        self.scores = like.new_empty(n_queries, 0)
        self.rows = torch.empty(n_queries, 0, dtype=torch.long, device=like.device)

    def add(self, scores: Tensor, rows: Tensor) -> None:
        """Merge `scores` `[queries, m]` of the documents at `rows` `[m]`."""
        block_best, picked = scores.topk(min(self.k, scores.shape[1]), dim=1)
        merged = torch.cat([self.scores, block_best], dim=1)
        merged_rows = torch.cat([self.rows, rows.to(picked.device)[picked]], dim=1)
        self.scores, kept = merged.topk(min(self.k, merged.shape[1]), dim=1)
        self.rows = merged_rows.gather(1, kept)


def exact_top_k(
    score: Callable[[Tensor, Tensor], Tensor],
    queries: Tensor,
    documents: Tensor,
    k: int,
    query_chunk: int = 1024,
    doc_chunk: int = 16384,
) -> tuple[Tensor, Tensor]:
    """The k best documents of every query: (scores, document rows), each `[n_queries, k]`.

    Scores are computed `query_chunk x doc_chunk` at a time and merged into a running top-k,
    so memory stays bounded whatever the collection size.
    """
    k = min(k, len(documents))
    top_scores, top_rows = [], []
    for q_start in progress(range(0, len(queries), query_chunk), desc="search", unit="block"):
        block = queries[q_start : q_start + query_chunk]
        best = RunningTopK(len(block), k, block)
        for d_start in range(0, len(documents), doc_chunk):
            scores = score(block, documents[d_start : d_start + doc_chunk])
            best.add(scores, torch.arange(d_start, d_start + scores.shape[1]))
        top_scores.append(best.scores)
        top_rows.append(best.rows)
    return torch.cat(top_scores), torch.cat(top_rows)
