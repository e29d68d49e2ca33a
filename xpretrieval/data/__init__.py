"""Collections of documents, queries and relevance judgements, from ir-datasets or BEIR folders."""

from xpretrieval.data.collection import Collection, Qrels
from xpretrieval.data.dataset import DatasetConfig, Split

__all__ = ["Collection", "DatasetConfig", "Qrels", "Split"]
