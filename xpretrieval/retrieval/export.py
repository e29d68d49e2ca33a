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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from xpretrieval.core.device import Precision
from xpretrieval.core.io import atomic_directory, atomic_file
from xpretrieval.data.collection import Collection
from xpretrieval.data.documents import document_ids
from xpretrieval.models.base import BiEncoder, DenseBiEncoder, SparseBiEncoder
from xpretrieval.models.encoding import Batching, encode_batches

logger = logging.getLogger(__name__)


@dataclass
class ExportConfig:
    """How `export` writes a collection's representations."""

    # sparse weights are multiplied by this and rounded for Anserini's integer impacts:
    # 100 keeps two decimals of SPLADE's weights (typically 0-3)
    scale: float = 100.0

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")


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
    with atomic_file(folder / "corpus" / "docs.jsonl") as handle:
        for rows, reps in _batches(model, False, collection.document_texts(), encoding):
            for row, vector in zip(rows.tolist(), _impacts(model, reps, scale), strict=True):
                terms = {vocabulary[term]: impact for term, impact in vector}
                record = {"id": doc_ids[row], "contents": "", "vector": terms}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    queries = list(collection.queries.items())
    lines: dict[int, str] = {}
    for rows, reps in _batches(model, True, [t for _, t in queries], encoding):
        for row, vector in zip(rows.tolist(), _impacts(model, reps, scale), strict=True):
            words = " ".join(" ".join([vocabulary[term]] * impact) for term, impact in vector)
            lines[row] = f"{queries[row][0]}\t{words}\n"
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


def _impacts(model: SparseBiEncoder, reps: Tensor, scale: float) -> Iterator[list[tuple[int, int]]]:
    """Each row's (term id, integer impact) pairs, zero impacts left out."""
    quantised = torch.round(model.term_weights(reps).float() * scale).to(torch.int64)
    for row in quantised:
        terms = row.nonzero().squeeze(1)
        yield list(zip(terms.tolist(), row[terms].tolist(), strict=True))


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
