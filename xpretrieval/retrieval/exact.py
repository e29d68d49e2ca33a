"""Exact (brute-force) top-k search over in-memory representations, in bounded chunks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from xpretrieval.progress import progress


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
        best = torch.empty(len(block), 0, dtype=block.dtype, device=block.device)
        best_rows = torch.empty(len(block), 0, dtype=torch.long, device=block.device)
        for d_start in range(0, len(documents), doc_chunk):
            scores = score(block, documents[d_start : d_start + doc_chunk])
            # the chunk's own top k first: the merge then handles [queries, 2k], not the chunk
            chunk_best, chunk_rows = scores.topk(min(k, scores.shape[1]), dim=1)
            merged = torch.cat([best, chunk_best], dim=1)
            merged_rows = torch.cat([best_rows, chunk_rows + d_start], dim=1)
            best, picked = merged.topk(min(k, merged.shape[1]), dim=1)
            best_rows = merged_rows.gather(1, picked)
        top_scores.append(best)
        top_rows.append(best_rows)
    return torch.cat(top_scores), torch.cat(top_rows)
