"""Index configs: how document representations are stored and searched for the top-k."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import torch
from torch import Tensor

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.core.errors import ConfigError
from xpretrieval.models.base import BiEncoder, ModelConfig, SparseBiEncoder
from xpretrieval.models.encoding import Reps
from xpretrieval.models.quantization import Quantization, trained_quantization
from xpretrieval.retrieval.coverage import RowCoverage
from xpretrieval.retrieval.exact import exact_top_k
from xpretrieval.retrieval.inverted import InvertedSearch

ScoreFn = Callable[[Tensor, Tensor], Tensor]
DOCUMENTS_FILE = "documents.pt"


class SearchIndex(Protocol):
    """A built index: the k best documents of each query, as (scores, rows), `[n_queries, k]`."""

    def search(self, queries: Reps, k: int) -> tuple[Tensor, Tensor]: ...

    def statistics(self) -> dict[str, float]:
        """Size of the index: documents and megabytes (sparse indexes: active terms too)."""

    def save(self, folder: Path) -> None:
        """Write the index's files into an existing, empty `folder`."""


@dataclass
class IndexConfig(ABC):
    """Builds a search index from document representations streamed batch by batch."""

    # the model kind it can index; an index of sparse models (SparseBiEncoder) reads their
    # representations as sparse rows (the non-zeros), never as dense [n, vocab] weights
    serves: ClassVar[type[BiEncoder]] = BiEncoder

    save: bool = False  # also write the built index to <run dir>/index/
    load: str | None = None  # a saved index folder to search instead of encoding documents
    # approximate indexes: queries whose exact top-k is computed on the way, to report the
    # index's recall against exact search in metrics.json (0: not measured)
    recall_queries: int = 100

    def __post_init__(self) -> None:
        check_range("recall_queries", self.recall_queries, at_least=0)

    @property
    def approximate(self) -> bool:
        """Whether search may miss some of the exact top-k (then its recall is measured)."""
        return False

    def fitted(self, model: ModelConfig) -> IndexConfig:
        """This index with the settings it leaves to the model taken from `model` (itself here);
        a ConfigError where the two disagree: a model trained for quantised search (its
        `quantization`) is searched by an index that quantises alike."""
        trained = trained_quantization(model)
        if trained is not Quantization.none:
            raise ConfigError(
                f"model.quantization={trained.value}: the model's vectors were trained for "
                f"{trained.value} search, which a {type(self).__name__} index does not do; use "
                "index=quantized (its precision follows model.quantization), or set "
                "model.quantization=none to search the full-precision vectors"
            )
        return self

    @abstractmethod
    def build(
        self, batches: Iterable[tuple[Tensor, Reps]], n_documents: int, score: ScoreFn
    ) -> SearchIndex:
        """Index `(rows, reps)` batches covering rows 0..n_documents-1 in any order (sparse
        rows when it serves sparse models)."""

    @abstractmethod
    def open(self, folder: Path, score: ScoreFn) -> SearchIndex:
        """The index that `SearchIndex.save` wrote into `folder`."""


@register("index", "exact")
@dataclass
class ExactIndex(IndexConfig):
    """All representations in one tensor, scored exhaustively with the model's own score in
    bounded chunks. Exact for every model; for sparse models it holds [n_docs, vocab]."""

    query_chunk: int = 1024
    doc_chunk: int = 16384

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("query_chunk", "doc_chunk"):
            check_range(name, getattr(self, name), at_least=1)

    def open(self, folder: Path, score: ScoreFn) -> SearchIndex:
        return _ExactSearch(self, torch.load(folder / DOCUMENTS_FILE), score)

    def build(
        self, batches: Iterable[tuple[Tensor, Tensor]], n_documents: int, score: ScoreFn
    ) -> SearchIndex:
        documents: Tensor | None = None
        coverage = RowCoverage(n_documents)
        for rows, reps in batches:
            coverage.add(rows)
            if documents is None:
                documents = torch.empty(n_documents, *reps.shape[1:], device=reps.device)
            documents[rows.to(reps.device)] = reps
        coverage.check_complete()  # a row never written would hold whatever memory held
        return _ExactSearch(self, documents, score)


@dataclass
class _ExactSearch:
    config: ExactIndex
    documents: Tensor
    score: ScoreFn

    def search(self, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        chunks = self.config.query_chunk, self.config.doc_chunk
        return exact_top_k(self.score, queries, self.documents, k, *chunks)

    def statistics(self) -> dict[str, float]:
        documents = self.documents
        size = documents.numel() * documents.element_size()
        return {
            "documents": len(documents),
            "megabytes": size / 2**20,
            "bytes_per_document": size / max(len(documents), 1),
        }

    def save(self, folder: Path) -> None:
        torch.save(self.documents.cpu(), folder / DOCUMENTS_FILE)


@register("index", "inverted")
@dataclass
class Inverted(IndexConfig):
    """Posting lists of the non-zero term weights of sparse representations; exact top-k for
    dot-product scores without a [n_docs, vocab] matrix."""

    serves: ClassVar[type[BiEncoder]] = SparseBiEncoder

    def build(
        self, batches: Iterable[tuple[Tensor, Reps]], n_documents: int, score: ScoreFn
    ) -> SearchIndex:
        return InvertedSearch.from_batches(batches, n_documents)

    def open(self, folder: Path, score: ScoreFn) -> SearchIndex:
        return InvertedSearch.load(folder)
