"""Dataset configs: where the training and test splits come from."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.data.collection import Collection


@dataclass
class Split:
    """One split, from an ir-datasets id or from a BEIR-layout folder (exactly one of them)."""

    ir_datasets: str | None = None  # e.g. beir/scifact/test
    beir_folder: str | None = None  # a folder with corpus.jsonl, queries.jsonl, qrels/<split>.tsv
    split: str | None = None  # with beir_folder: which qrels/<split>.tsv (train, dev, test)
    # keep every judged document and only this many in all (others drawn at random, always
    # the same ones): a smaller, still realistic collection for quick runs; null: all
    max_documents: int | None = None
    # read documents when needed, for collections larger than memory: from corpus.jsonl through
    # an offset index (beir_folder) or through ir-datasets' docstore, holding only their ids
    on_disk: bool = False

    def __post_init__(self) -> None:
        if (self.ir_datasets is None) == (self.beir_folder is None):
            raise ValueError(
                "set exactly one of ir_datasets (an ir-datasets id) and beir_folder (a path), "
                f"got ir_datasets={self.ir_datasets!r}, beir_folder={self.beir_folder!r}"
            )
        if self.beir_folder is not None and not self.split:
            raise ValueError(f"split must name the qrels file of beir_folder={self.beir_folder!r}")
        check_range("max_documents", self.max_documents, at_least=1, optional=True)

    def load(self) -> Collection:
        """Read the split's documents, queries and qrels."""
        if self.ir_datasets is not None:
            collection = Collection.from_ir_datasets(self.ir_datasets, self.on_disk)
        else:
            collection = Collection.from_beir(self.beir_folder, self.split, self.on_disk)
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
