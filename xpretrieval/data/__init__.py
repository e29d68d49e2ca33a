"""Collections of documents, queries and relevance judgements, from ir-datasets or BEIR folders."""

from xpretrieval.data.collection import Collection
from xpretrieval.data.dataset import DatasetConfig, Split
from xpretrieval.data.records import Qrels
from xpretrieval.data.run import Run, read_trec_run, write_trec_run

__all__ = [
    "Collection",
    "DatasetConfig",
    "Qrels",
    "Run",
    "Split",
    "read_trec_run",
    "write_trec_run",
]
