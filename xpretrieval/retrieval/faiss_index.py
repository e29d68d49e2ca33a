"""Dense search through faiss (Douze et al. 2024, "The Faiss library"): any index that faiss's
`index_factory` builds from a string — `Flat` (exact), `IVF4096,Flat`, `HNSW32`,
`IVF1024,PQ64x8` — on the model's dot-product scores, saved and reopened like the others."""

from __future__ import annotations

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
from xpretrieval.models.base import BiEncoder, DenseBiEncoder
from xpretrieval.retrieval.coverage import RowCoverage
from xpretrieval.retrieval.index import IndexConfig, ScoreFn, SearchIndex

INDEX_FILE = "faiss.index"


def import_faiss(index: str = "faiss") -> Any:
    """The faiss module, or a ConfigError saying that `index=<index>` needs it installed."""
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            f"index={index} needs faiss: pip install 'xpretrieval[faiss]' (faiss-cpu), or "
            "faiss-gpu from conda"
        ) from None
    return faiss


@register("index", "faiss")
@dataclass
class Faiss(IndexConfig):
    """Single vectors in a faiss index made by `index_factory(dim, factory, inner product)`.
    Indexes that learn (IVF centroids, PQ codebooks) train on the first `train_size`
    documents, then every document is added batch by batch."""

    serves: ClassVar[type[BiEncoder]] = DenseBiEncoder

    factory: str = "Flat"  # e.g. Flat (exact), IVF4096,Flat, HNSW32, IVF1024,PQ64x8
    nprobe: int | None = None  # IVF: inverted lists searched per query (faiss's default: 1)
    ef_search: int | None = None  # HNSW: candidate list size when searching (default: 16)
    train_size: int = 100_000  # documents that learning indexes train on
    threads: int = 0  # 0: faiss's default (all cores)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.factory.strip():
            raise ValueError("factory must be a faiss index_factory string, e.g. Flat or HNSW32")
        for name in ("nprobe", "ef_search"):
            check_range(name, getattr(self, name), at_least=1, optional=True)
        check_range("train_size", self.train_size, at_least=1)

    @property
    def approximate(self) -> bool:
        return self.factory.replace(" ", "") not in ("Flat", "IDMap,Flat")

    def build(
        self, batches: Iterable[tuple[Tensor, Tensor]], n_documents: int, score: ScoreFn
    ) -> SearchIndex:
        faiss = import_faiss()
        self._set_threads(faiss)
        index, pending, waiting, coverage = None, [], 0, RowCoverage(n_documents)
        for rows, reps in batches:
            vectors = reps.detach().float().cpu().numpy()
            if index is None:
                index = self._make(faiss, vectors.shape[1])
            pending.append((coverage.add(rows).astype(np.int64), vectors))
            waiting += len(rows)
            if index.is_trained:
                self._add(index, pending)
                pending, waiting = [], 0
            elif waiting >= min(self.train_size, n_documents):
                training = np.concatenate([v for _, v in pending])[: self.train_size]
                self._train(index, training, n_documents)
                self._add(index, pending)
                pending, waiting = [], 0
        if index is None:
            raise ValueError("cannot build a faiss index from no documents")
        coverage.check_complete()
        if pending:  # fewer documents than train_size
            if not index.is_trained:
                self._train(index, np.concatenate([v for _, v in pending]), n_documents)
            self._add(index, pending)
        return FaissSearch(self, index)

    def open(self, folder: Path, score: ScoreFn) -> SearchIndex:
        faiss = import_faiss()
        self._set_threads(faiss)
        return FaissSearch(self, faiss.read_index(str(folder / INDEX_FILE)))

    def _make(self, faiss: Any, dim: int) -> Any:
        try:
            inner = faiss.index_factory(dim, self.factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as error:
            raise ConfigError(
                f"index.factory={self.factory!r}: faiss cannot build it ({error})"
            ) from None
        return faiss.IndexIDMap(inner)  # documents keep their collection rows as ids

    def _train(self, index: Any, vectors: np.ndarray, n_documents: int) -> None:
        """Train `index` on `vectors`; faiss refuses too few of them (fewer than an IVF's
        lists or a quantiser's centroids) with a C++ traceback, said here in one line."""
        try:
            index.train(vectors)
        except RuntimeError as error:
            reason = str(error).rsplit("failed: ", 1)[-1].rsplit("Error: ", 1)[-1].strip()
            raise ConfigError(
                f"index.factory={self.factory!r} cannot be trained on {n_documents} documents "
                f"({len(vectors)} training vectors, index.train_size={self.train_size}): "
                f"{reason}; choose an index with fewer lists or centroids (e.g. "
                f"IVF{max(1, len(vectors) // 39)},Flat), or Flat or HNSW32, which need no training"
            ) from None

    @staticmethod
    def _add(index: Any, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for ids, vectors in parts:
            index.add_with_ids(vectors, ids)

    def _set_threads(self, faiss: Any) -> None:
        if self.threads:
            faiss.omp_set_num_threads(self.threads)


@dataclass
class FaissSearch:
    config: Faiss
    index: Any  # faiss.IndexIDMap

    def search(self, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        faiss = import_faiss()
        space = faiss.ParameterSpace()
        for name, value in (("nprobe", self.config.nprobe), ("efSearch", self.config.ef_search)):
            if value is not None:
                try:
                    space.set_index_parameter(self.index, name, value)
                except RuntimeError:
                    field = "nprobe" if name == "nprobe" else "ef_search"
                    raise ConfigError(
                        f"index.{field}: a {self.config.factory!r} index has no {name}"
                    ) from None
        k = min(k, self.index.ntotal)
        scores, rows = self.index.search(queries.detach().float().cpu().numpy(), k)
        return torch.from_numpy(scores), torch.from_numpy(rows)

    def statistics(self) -> dict[str, float]:
        statistics = {"documents": self.index.ntotal}
        code_size = getattr(import_faiss().downcast_index(self.index.index), "code_size", None)
        if code_size is not None:  # the stored codes and ids (graphs and centroids aside)
            statistics["megabytes"] = self.index.ntotal * (code_size + 8) / 2**20
            statistics["bytes_per_document"] = code_size
        return statistics

    def save(self, folder: Path) -> None:
        import_faiss().write_index(self.index, str(folder / INDEX_FILE))
