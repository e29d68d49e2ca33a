"""Approximate sparse retrieval with Seismic (Bruch, Nardini, Rulli, Venturini, SIGIR 2024,
"Efficient Inverted Indexes for Approximate Retrieval over Learned Sparse Representations"),
through its Python package `pyseismic-lsr`: for collections where exact search is too slow."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.core.errors import ConfigError
from xpretrieval.models.base import BiEncoder, SparseBiEncoder
from xpretrieval.models.encoding import Reps, sparse_rows
from xpretrieval.retrieval.coverage import RowCoverage
from xpretrieval.retrieval.index import IndexConfig, ScoreFn, SearchIndex


@register("index", "seismic")
@dataclass
class Seismic(IndexConfig):
    """Seismic's index: pruned posting lists cut into blocks with summary vectors; search
    skips blocks whose summary cannot beat the current top-k. Scores are dot products."""

    serves: ClassVar[type[BiEncoder]] = SparseBiEncoder

    n_postings: int = 3500  # postings kept per term on average (static pruning)
    centroid_fraction: float = 0.1  # blocks per posting list, as a fraction of its length
    summary_energy: float = 0.4  # fraction of each block's mass its summary keeps
    doc_cut: int = 15  # document terms used to cluster postings into blocks
    query_cut: int = 10  # heaviest query terms searched
    heap_factor: float = 0.7  # skip a block unless its summary score beats this x the k-th best
    threads: int = 0  # 0: Seismic's default (all cores)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_postings", "doc_cut", "query_cut"):
            check_range(name, getattr(self, name), at_least=1)
        for name in ("centroid_fraction", "summary_energy", "heap_factor"):
            check_range(name, getattr(self, name), above=0, at_most=1)

    @property
    def approximate(self) -> bool:
        return True

    def build(
        self, batches: Iterable[tuple[Tensor, Reps]], n_documents: int, score: ScoreFn
    ) -> SearchIndex:
        seismic = _import_seismic()
        dataset, postings, coverage = None, 0, RowCoverage(n_documents)
        for batch_rows, reps in batches:
            rows = coverage.add(batch_rows)
            csr = sparse_rows(reps)
            if dataset is None:
                dataset = seismic.SeismicDataset(dim=csr.shape[1])
            postings += csr.nnz
            dataset.add_documents_by_id(
                [str(row) for row in rows.tolist()],
                csr.indices.astype(np.int64),
                csr.data.astype(np.float32),
                csr.indptr.astype(np.int64),
            )
        if dataset is None:
            raise ValueError("cannot build a Seismic index from no documents")
        coverage.check_complete()
        index = seismic.SeismicIndex.build_from_dataset(
            dataset,
            n_postings=self.n_postings,
            centroid_fraction=self.centroid_fraction,
            summary_energy=self.summary_energy,
            doc_cut=self.doc_cut,
            num_threads=self.threads,
        )
        return SeismicSearch(self, index, n_documents, postings)

    def open(self, folder: Path, score: ScoreFn) -> SearchIndex:
        seismic = _import_seismic()
        index = seismic.SeismicIndex.load(str(folder / SeismicSearch.FILE))
        return SeismicSearch(self, index, index.len, index.nnz)


class SeismicSearch:
    """A built Seismic index; rows beyond what it returns are padded with -1 and -inf."""

    STEM = "index"  # Seismic's save(STEM) writes FILE
    FILE = f"{STEM}.index.seismic"

    def __init__(self, config: Seismic, index: Any, n_documents: int, postings: int) -> None:
        self.config = config
        self.index = index
        self.n_documents = n_documents
        self.postings = postings

    def search(self, queries: Reps, k: int) -> tuple[Tensor, Tensor]:
        seismic = _import_seismic()
        text = seismic.get_seismic_string()
        weights = sparse_rows(queries)
        n_queries = weights.shape[0]
        components, values = [], []
        for start, stop in itertools.pairwise(weights.indptr):
            components.append(weights.indices[start:stop].astype(str).astype(text))
            values.append(weights.data[start:stop])
        results = self.index.batch_search(
            np.array([str(i) for i in range(n_queries)], dtype=text),
            components,
            values,
            k=k,
            query_cut=self.config.query_cut,
            heap_factor=self.config.heap_factor,
            num_threads=self.config.threads,
        )
        k = min(k, self.n_documents)
        scores = torch.full((n_queries, k), float("-inf"))
        rows = torch.full((n_queries, k), -1, dtype=torch.long)
        for hits in results:  # in no particular order when searched by several threads
            for j, (query, score, doc) in enumerate(hits[:k]):
                scores[int(query), j], rows[int(query), j] = score, int(doc)
        return scores, rows

    def save(self, folder: Path) -> None:
        self.index.save(str(folder / self.STEM))

    def statistics(self) -> dict[str, float]:
        return {
            "documents": self.n_documents,
            "doc_active_dims": self.postings / self.n_documents,
            "postings": self.postings,
        }


def _import_seismic() -> Any:
    try:
        import seismic
    except ImportError:
        raise ConfigError(
            "index=seismic needs the pyseismic-lsr package: pip install 'xpretrieval[seismic]'"
        ) from None
    return seismic
