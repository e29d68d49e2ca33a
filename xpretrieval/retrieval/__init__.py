"""Indexing and search: encode a collection into an index, retrieve the top-k documents."""

from xpretrieval.core.config import register_package
from xpretrieval.retrieval.exact import exact_top_k
from xpretrieval.retrieval.index import ExactIndex, IndexConfig, Inverted
from xpretrieval.retrieval.inverted import InvertedSearch
from xpretrieval.retrieval.retrieve import Retrieval, retrieve
from xpretrieval.retrieval.seismic import Seismic

__all__ = [
    "ExactIndex",
    "IndexConfig",
    "Inverted",
    "InvertedSearch",
    "Retrieval",
    "Seismic",
    "exact_top_k",
    "retrieve",
]

register_package(__name__)  # every module of the package: new components register themselves
