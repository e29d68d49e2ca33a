"""Indexing and search: encode a collection, retrieve the top-k documents, write run files."""

from xpretrieval.retrieval.encode import encode_batches, encode_texts
from xpretrieval.retrieval.exact import exact_top_k
from xpretrieval.retrieval.index import ExactIndex, IndexConfig, Inverted
from xpretrieval.retrieval.inverted import InvertedIndex
from xpretrieval.retrieval.retrieve import Retrieval, retrieve
from xpretrieval.retrieval.run import Run, read_trec_run, write_trec_run
from xpretrieval.retrieval.seismic import Seismic

__all__ = [
    "ExactIndex",
    "IndexConfig",
    "Inverted",
    "InvertedIndex",
    "Retrieval",
    "Run",
    "Seismic",
    "encode_batches",
    "encode_texts",
    "exact_top_k",
    "read_trec_run",
    "retrieve",
    "write_trec_run",
]
