"""Dataset configs: where the training and test splits come from."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from omegaconf import MISSING

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.data.collection import Collection
from xpretrieval.data.hub import read_hub_examples
from xpretrieval.data.hub_layouts import ColumnMapping
from xpretrieval.data.passages import Passages, PositivePassage

SOURCES = ("ir_datasets", "beir_folder", "hf_dataset")
HUB_SETTINGS = ("hf_subset", "hf_queries", "hf_documents", "streaming")


@dataclass
class Split:
    """One split, from an ir-datasets id, a BEIR-layout folder or (training only) a dataset of
    training examples read by the `datasets` library: exactly one of them."""

    ir_datasets: str | None = None  # e.g. beir/scifact/test
    beir_folder: str | None = None  # a folder with corpus.jsonl, queries.jsonl, qrels/<split>.tsv
    # with beir_folder: which qrels/<split>.tsv (train, dev, test); with hf_dataset: which of its
    # splits (null: train)
    split: str | None = None
    # training examples: a Hub dataset id, a local folder, or a .parquet / .jsonl file, in a
    # published layout (sentence-transformers' texts or id triplets, tevatron, pylate's ids and
    # scores: docs/hub-data.md)
    hf_dataset: str | None = None
    hf_subset: str | None = None  # the Hub dataset's subset (configuration), if it has several
    # the columns of each role in any other layout: {query: q, positive: p, negatives: [n1, n2],
    # score: s}; unset: the layout is recognised from the column names
    hf_columns: ColumnMapping = field(default_factory=ColumnMapping)
    # the separate text sets of a layout of ids, each a path or Hub id (null for a Hub id: its own
    # subsets): pylate's queries (query_id, text) and documents (document_id, text), or
    # sentence-transformers' queries (query_id, query) and corpus (passage_id, passage)
    hf_queries: str | None = None
    hf_documents: str | None = None
    # hf_dataset read as a stream, never held whole (for sets larger than memory or disk); the
    # separate text sets of a layout of ids are still downloaded whole (memory-mapped)
    streaming: bool = False
    shuffle_buffer: int = 10_000  # streaming: rows shuffled within a buffer of this many
    # keep every judged document and only this many in all (others drawn at random, always
    # the same ones): a smaller, still realistic collection for quick runs; null: all
    max_documents: int | None = None
    # read documents when needed, for collections larger than memory: from corpus.jsonl through
    # an offset index (beir_folder) or through ir-datasets' docstore, holding only their ids
    on_disk: bool = False
    # long documents cut into windows of words for encoding and search, each document scored
    # from its windows' scores (MaxP, FirstP, SumP); off while passages.length is null
    passages: Passages = field(default_factory=Passages)

    def __post_init__(self) -> None:
        given = {name: getattr(self, name) for name in SOURCES if getattr(self, name) is not None}
        if len(given) != 1:
            raise ValueError(
                "set exactly one of ir_datasets (an ir-datasets id), beir_folder (a path) and "
                "hf_dataset (training examples), got "
                + ", ".join(f"{name}={getattr(self, name)!r}" for name in SOURCES)
            )
        if self.beir_folder is not None and not self.split:
            raise ValueError(f"split must name the qrels file of beir_folder={self.beir_folder!r}")
        check_range("max_documents", self.max_documents, at_least=1, optional=True)
        check_range("shuffle_buffer", self.shuffle_buffer, at_least=1)
        if self.hf_dataset is None:
            hub_only = [n for n in HUB_SETTINGS if getattr(self, n)]
            hub_only += ["hf_columns"] if self.hf_columns.given else []
            if hub_only:
                raise ValueError(f"{hub_only[0]} applies to hf_dataset only, which is not set")
        elif self.max_documents is not None or self.on_disk:
            raise ValueError(
                "max_documents and on_disk apply to collections; hf_dataset holds training "
                "examples (streaming=true keeps them out of memory)"
            )

    def load(self) -> Collection:
        """Read the split's documents, queries and qrels, or a dataset's training examples."""
        passages = self.passages if self.passages.enabled else None
        if self.hf_dataset is not None:
            return replace(Collection.from_training(read_hub_examples(self)), passages=passages)
        if self.ir_datasets is not None:
            collection = Collection.from_ir_datasets(self.ir_datasets, self.on_disk)
        else:
            collection = Collection.from_beir(self.beir_folder, self.split, self.on_disk)
        collection = replace(collection, passages=passages)
        if self.max_documents is None:
            return collection
        return collection.subsample_documents(self.max_documents, seed=0)


@register("dataset", "dataset")
@dataclass
class DatasetConfig:
    """A named dataset: the split trained on (optional for `evaluate`), an optional split to
    validate on while training, and the split tested on."""

    name: str = MISSING
    train: Split | None = None
    dev: Split | None = None
    test: Split = MISSING

    def __post_init__(self) -> None:
        for role in ("dev", "test"):
            split = getattr(self, role)
            if isinstance(split, Split) and split.hf_dataset is not None:
                raise ValueError(
                    f"{role}.hf_dataset: a dataset of training examples has no relevance "
                    f"judgements to measure; give {role} an ir_datasets id or a beir_folder"
                )
            if isinstance(split, Split) and split.passages.positive is not PositivePassage.first:
                raise ValueError(
                    f"{role}.passages.positive: the passage trained on applies to the training "
                    f"split; set dataset.train.passages.positive instead"
                )
