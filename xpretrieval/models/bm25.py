"""BM25 (Robertson and Zaragoza 2009) through bm25s: the lexical baseline, and a first-stage
retriever. It has no encoder to train: `evaluate model=bm25` ranks a collection with it."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import ClassVar

import bm25s
import Stemmer
import torch

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.data.collection import Collection
from xpretrieval.data.documents import document_ids
from xpretrieval.data.run import Run
from xpretrieval.models.base import ModelConfig, Ranker

logger = logging.getLogger(__name__)


class Bm25Retriever(Ranker):
    """Indexes a collection's documents with bm25s and ranks its queries."""

    def __init__(self, config: Bm25) -> None:
        self.config = config
        self._stemmer = None if config.stemmer is None else Stemmer.Stemmer(config.stemmer)

    def to(self, device: torch.device) -> Bm25Retriever:
        """BM25 runs on the CPU whatever the device (kept for the models' interface)."""
        return self

    def rank(self, collection: Collection, k: int) -> tuple[Run, dict[str, float]]:
        """The top-k documents of every query, and the index's size."""
        config = self.config
        doc_ids = document_ids(collection.documents)
        start = time.perf_counter()
        index = bm25s.BM25(k1=config.k1, b=config.b, method=config.method)
        index.index(self._tokenize(list(collection.document_texts())), show_progress=_bars())
        logger.info(
            "BM25: indexed %d documents of %s in %.1f s",
            len(doc_ids),
            collection.name,
            time.perf_counter() - start,
        )
        queries = self._tokenize(list(collection.queries.values()))
        k = min(k, len(doc_ids))
        rows, scores = index.retrieve(queries, k=k, show_progress=_bars(), n_threads=0)
        run = {
            query_id: [
                (doc_ids[row], float(score))
                for row, score in zip(rows[i], scores[i], strict=True)
                if score > 0  # bm25s fills a short result list with zero-score documents
            ]
            for i, query_id in enumerate(collection.queries)
        }
        return run, {"documents": len(doc_ids), "vocabulary": len(index.vocab_dict)}

    def _tokenize(self, texts: list[str]) -> bm25s.tokenization.Tokenized:
        return bm25s.tokenize(
            texts, stopwords=self.config.stopwords, stemmer=self._stemmer, show_progress=_bars()
        )


@register("model", "bm25")
@dataclass
class Bm25(ModelConfig):
    """BM25 scoring of stemmed, stop-word-filtered words (bm25s' Lucene variant by default)."""

    model_class: ClassVar[type[Bm25Retriever]] = Bm25Retriever

    k1: float = 0.9  # term-frequency saturation (Anserini's BEIR setting)
    b: float = 0.4  # document-length normalisation (Anserini's BEIR setting)
    method: str = "lucene"  # bm25s variant: lucene, robertson, atire, bm25l, bm25+
    stemmer: str | None = "english"  # a PyStemmer language, or null for none
    stopwords: str | None = "en"  # a bm25s stop-word list, or null for none

    def __post_init__(self) -> None:
        check_range("k1", self.k1, at_least=0)
        check_range("b", self.b, at_least=0, at_most=1)
        if self.stemmer is not None and self.stemmer not in Stemmer.algorithms():
            raise ValueError(
                f"stemmer: {self.stemmer!r} is not a PyStemmer language "
                f"({', '.join(Stemmer.algorithms()[:6])}, ...)"
            )

    def build(self) -> Bm25Retriever:
        return Bm25Retriever(self)


def _bars() -> bool:
    """bm25s's own progress bars, on a terminal only (a log file gets the timing line)."""
    return sys.stderr.isatty()
