"""A collection encoded by a model, in files other engines read (`python -m xpretrieval export`).

Sparse models (SPLADE): the documents as an Anserini JsonVectorCollection (each term weight
multiplied by `export.scale` and rounded to an integer, as Anserini's impact indexes expect)
and the queries as a TSV of space-separated terms, each repeated as many times as its
quantised weight (Anserini's and Pyserini's pretokenized impact queries). Dense models: the
vectors as float32 `.npy` arrays with their ids one per line, for faiss or numpy.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from xpretrieval.core.checks import check_range
from xpretrieval.core.device import Precision
from xpretrieval.core.errors import ConfigError
from xpretrieval.core.io import atomic_directory, atomic_file
from xpretrieval.data.collection import Collection
from xpretrieval.data.documents import document_ids
from xpretrieval.models.base import BiEncoder, DenseBiEncoder, SparseBiEncoder
from xpretrieval.models.encoding import Batching, encode_batches

logger = logging.getLogger(__name__)

# Anserini indexes a document's impacts as that many repetitions of each term, and reads a
# query's from its repeated terms: larger impacts gain no precision but take memory (an int64
# overflow would make them negative: empty vectors)
MAX_IMPACT = 2**16 - 1


@dataclass
class ExportConfig:
    """How `export` writes a collection's representations."""

    # sparse weights are multiplied by this and rounded for Anserini's integer impacts:
    # 100 keeps two decimals of SPLADE's weights (typically 0-3)
    scale: float = 100.0

    def __post_init__(self) -> None:
        check_range("scale", self.scale, above=0)


def export_collection(
    model: BiEncoder,
    collection: Collection,
    folder: Path,
    settings: ExportConfig,
    batching: Batching,
    device: torch.device,
    precision: Precision,
) -> dict[str, object]:
    """Write `collection`'s documents and queries encoded by `model` into `folder` (complete or
    absent); returns the manifest written beside them."""
    encoding = {"batching": batching, "device": device, "precision": precision}
    with atomic_directory(folder) as tmp:
        if isinstance(model, SparseBiEncoder):
            manifest = _export_sparse(model, collection, tmp, settings.scale, encoding)
        else:
            assert isinstance(model, DenseBiEncoder), "compatibility.check_exportable refuses it"
            manifest = _export_dense(model, collection, tmp, encoding)
        (tmp / "export.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _export_sparse(
    model: SparseBiEncoder, collection: Collection, folder: Path, scale: float, encoding: dict
) -> dict[str, object]:
    vocabulary = model.tokenizer.convert_ids_to_tokens(list(range(len(model.tokenizer))))
    (folder / "corpus").mkdir()
    doc_ids = document_ids(collection.documents)
    documents = Quantiser(scale, "document")
    with atomic_file(folder / "corpus" / "docs.jsonl") as handle:
        for rows, reps in _batches(model, False, collection.document_texts(), encoding):
            impacts = documents.impacts(model.term_weights(reps))
            for row, vector in zip(rows.tolist(), impacts, strict=True):
                terms = {vocabulary[term]: impact for term, impact in vector}
                record = {"id": doc_ids[row], "contents": "", "vector": terms}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    documents.check_some_impact()
    queries = list(collection.queries.items())
    quantiser = Quantiser(scale, "query")
    lines: dict[int, str] = {}
    for rows, reps in _batches(model, True, [t for _, t in queries], encoding):
        impacts = quantiser.impacts(model.term_weights(reps))
        for row, vector in zip(rows.tolist(), impacts, strict=True):
            words = " ".join(" ".join([vocabulary[term]] * impact) for term, impact in vector)
            lines[row] = f"{queries[row][0]}\t{words}\n"
    quantiser.check_some_impact()
    with atomic_file(folder / "queries.tsv") as handle:
        handle.writelines(lines[row] for row in range(len(queries)))
    return {
        "kind": "sparse",
        "scale": scale,
        "documents": len(doc_ids),
        "queries": len(queries),
        "index": "anserini: -collection JsonVectorCollection -input corpus -impact -pretokenized",
        "search": "anserini: -topics queries.tsv -topicReader TsvString -impact -pretokenized",
    }


@dataclass
class Quantiser:
    """Term weights × `export.scale`, rounded to integer impacts. A scale whose impacts
    overflow Anserini's integers, or that rounds every weight of a side (documents, queries)
    to 0, is refused: either would export files that rank wrongly."""

    scale: float
    side: str  # "document" or "query", as the refusal names them
    largest: float = 0.0  # the largest weight seen
    any_impact: bool = False

    def impacts(self, weights: Tensor) -> Iterator[list[tuple[int, int]]]:
        """Each row's (term id, integer impact) pairs, zero impacts left out."""
        weights = weights.float()
        if weights.numel():
            self.largest = max(self.largest, float(weights.abs().max()))
        if self.largest * self.scale > MAX_IMPACT:  # checked before the cast could wrap
            raise ConfigError(
                f"export.scale={self.scale:g} makes {self.side} impacts up to "
                f"{self.largest * self.scale:.3g}, beyond the {MAX_IMPACT} repetitions of a term "
                f"an impact may take; {self.scale_range()} (from the largest weight so far, "
                f"{self.largest:.3g})"
            )
        quantised = torch.round(weights * self.scale).to(torch.int64)
        self.any_impact = self.any_impact or bool(quantised.any())
        for row in quantised:
            terms = row.nonzero().squeeze(1)
            yield list(zip(terms.tolist(), row[terms].tolist(), strict=True))

    def check_some_impact(self) -> None:
        """Once the side is quantised: some weight must have kept a non-zero impact."""
        if self.largest > 0 and not self.any_impact:
            raise ConfigError(
                f"export.scale={self.scale:g} rounds every {self.side} weight to 0 (the largest "
                f"is {self.largest:.3g}): the exported vectors would be empty; "
                f"{self.scale_range()}"
            )

    def scale_range(self) -> str:
        """The scales that give the largest weight an impact from 1 to MAX_IMPACT."""
        low, high = _rounded(1 / self.largest, math.ceil), _rounded(MAX_IMPACT / self.largest)
        return f"choose export.scale between {low} and {high}"


def _rounded(value: float, direction: Callable[[float], int] = math.floor) -> str:
    """`value` to 3 significant digits, rounded in `direction` (inside the range it bounds)."""
    step = 10.0 ** (math.floor(math.log10(value)) - 2)
    return f"{direction(value / step) * step:.3g}"


def _export_dense(
    model: DenseBiEncoder, collection: Collection, folder: Path, encoding: dict
) -> dict[str, object]:
    for name, is_query, texts in (
        ("documents", False, collection.documents),
        ("queries", True, collection.queries),
    ):
        ids = list(texts)
        vectors: np.ndarray | None = None
        for rows, reps in _batches(model, is_query, list(texts.values()), encoding):
            if vectors is None:
                vectors = np.zeros((len(ids), reps.shape[1]), dtype=np.float32)
            vectors[rows.numpy()] = reps.numpy()
        np.save(folder / f"{name}.npy", vectors)
        (folder / f"{name}.ids").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    return {
        "kind": "dense",
        "normalized": bool(model.config.normalize),
        "documents": len(collection.documents),
        "queries": len(collection.queries),
        "files": "documents.npy / queries.npy (float32 [n, dim]), row i has id line i of .ids",
    }


def _batches(
    model: BiEncoder, is_query: bool, texts: list[str], encoding: dict
) -> Iterator[tuple[Tensor, Tensor]]:
    yield from encode_batches(model.text_encoder(is_query), texts, desc="export", **encoding)
