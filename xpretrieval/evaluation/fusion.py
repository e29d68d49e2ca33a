"""Fusing rankings of one collection into one: reciprocal rank fusion (Cormack, Clarke and
Buettcher, SIGIR 2009) and weighted sums of per-query normalised scores (CombSUM and CombMNZ,
Fox and Shaw, TREC-2 1994), as hybrid dense + sparse results are reported on BEIR.

Written here rather than taken from ranx: the formulas are a few lines, and ranx compiles its
numba kernels on import (96 s on a 2-core host, before fusing anything)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence

from xpretrieval.core.errors import UserInputError
from xpretrieval.data.run import Run

METHODS = ("rrf", "wsum", "comb_mnz")
NORMS = ("min-max", "z-score", "max", "none")


def fuse_runs(
    runs: Sequence[Run],
    method: str = "rrf",
    weights: Sequence[float] | None = None,
    norm: str = "min-max",
    rrf_k: int = 60,
) -> Run:
    """The fused ranking of every query any run ranks, best first (ties by document id).
    `rrf`: sum of weight / (rrf_k + rank); `wsum`: sum of weight x normalised score (a document
    a run misses adds 0); `comb_mnz`: `wsum` times the number of runs that rank the document."""
    if method not in METHODS:
        raise UserInputError(f"method={method}: choose one of {', '.join(METHODS)}")
    if norm not in NORMS:
        raise UserInputError(f"norm={norm}: choose one of {', '.join(NORMS)}")
    if weights is not None and len(weights) != len(runs):
        raise UserInputError(f"weights: {len(weights)} weights for {len(runs)} runs")
    weights = [1.0] * len(runs) if weights is None else list(weights)
    fused: Run = {}
    for query in sorted({query for run in runs for query in run}):
        scores: dict[str, float] = defaultdict(float)
        hits: dict[str, int] = defaultdict(int)
        for run, weight in zip(runs, weights, strict=True):
            ranking = run.get(query, [])
            contributions = (
                [1.0 / (rrf_k + rank) for rank in range(1, len(ranking) + 1)]
                if method == "rrf"
                else _normalised([score for _, score in ranking], norm)
            )
            for (doc_id, _), value in zip(ranking, contributions, strict=True):
                scores[doc_id] += weight * value
                hits[doc_id] += 1
        if method == "comb_mnz":
            scores = {doc_id: score * hits[doc_id] for doc_id, score in scores.items()}
        fused[query] = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return fused


def _normalised(scores: list[float], norm: str) -> list[float]:
    """One query's scores of one run on a common scale: `min-max` to [0, 1] (all equal: 1),
    `z-score` (all equal: 0), `max` (divided by the largest magnitude), or as they are."""
    if not scores or norm == "none":
        return scores
    if norm == "min-max":
        low, high = min(scores), max(scores)
        return [(s - low) / (high - low) if high > low else 1.0 for s in scores]
    if norm == "z-score":
        mean, spread = statistics.fmean(scores), statistics.pstdev(scores)
        return [(s - mean) / spread if spread > 0 else 0.0 for s in scores]
    largest = max(abs(s) for s in scores)
    return [s / largest if largest > 0 else 0.0 for s in scores]
