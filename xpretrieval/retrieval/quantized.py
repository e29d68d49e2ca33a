"""Quantised dense search: document vectors cut to a Matryoshka prefix (`dims`) and stored as
float32, int8 or binary codes (retrieval/codes.py), searched exhaustively over the codes, the
best candidates optionally rescored with the full-precision query, against the quantised
documents (as sentence-transformers' `semantic_search_faiss(rescore=True)`) or against the
full-precision ones kept beside the codes. Bytes per document go to metrics.json."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.core.errors import ConfigError
from xpretrieval.models.base import BiEncoder, DenseBiEncoder, ModelConfig
from xpretrieval.models.quantization import Quantization, trained_quantization
from xpretrieval.retrieval.codes import Codes, new_codes, read_codes
from xpretrieval.retrieval.coverage import RowCoverage
from xpretrieval.retrieval.faiss_index import import_faiss
from xpretrieval.retrieval.index import IndexConfig, ScoreFn, SearchIndex

SETTINGS_FILE = "quantized.json"
FULL_FILE = "full.npy"


class Rescore(str, Enum):
    """Whether the candidates of the quantised search are scored again, and against what."""

    none = "none"
    quantized = "quantized"  # the full-precision query against the documents' decoded codes
    full = "full"  # the full-precision query against the full-precision documents (all dims)


@register("index", "quantized")
@dataclass
class Quantized(IndexConfig):
    """Exhaustive search over document vectors cut to `dims` and quantised: float32 (none),
    int8 (faiss scalar quantiser, per-dimension ranges calibrated on the first
    `calibration_size` documents) or binary (sign bits, Hamming distance); then, optionally,
    the `k * rescore_multiplier` best are rescored and the k best of them kept."""

    serves: ClassVar[type[BiEncoder]] = DenseBiEncoder

    # none (float32), int8 or binary; null: the model's quantization (none if it has none)
    quantization: Quantization | None = None
    dims: int | None = None  # search the first `dims` dimensions (Matryoshka); null: all
    # L2-normalise the vectors cut to `dims`; null: when the model's scores are cosines
    normalize: bool | None = None
    rescore: Rescore = Rescore.none  # none, quantized or full (keeps float32 vectors too)
    rescore_multiplier: int = 4  # candidates rescored per result (k * this)
    calibration_size: int = 100_000  # int8: documents whose per-dimension ranges are used
    threads: int = 0  # faiss's threads; 0: its default (all cores)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.quantization is not None:
            self.quantization = Quantization(self.quantization)
        self.rescore = Rescore(self.rescore)
        check_range("dims", self.dims, at_least=1, optional=True)
        check_range("rescore_multiplier", self.rescore_multiplier, at_least=1)
        check_range("calibration_size", self.calibration_size, at_least=1)
        check_range("threads", self.threads, at_least=0)
        if self.rescore is Rescore.quantized and self.quantization is not None:
            if self.quantization is not Quantization.binary:
                raise ValueError(
                    f"rescore=quantized changes nothing with quantization="
                    f"{self.quantization.value}: its search already scores the full-precision "
                    "query against the decoded documents; use rescore=full or none"
                )

    @property
    def approximate(self) -> bool:
        """Quantised or cut vectors may miss the exact top-k: its recall is measured."""
        return self.quantization is not Quantization.none or self.dims is not None

    def fitted(self, model: ModelConfig) -> Quantized:
        """The precision the model was trained for (when left null: `quantization`), and
        whether cut vectors are normalised (when left null: its scores are cosines); a
        precision other than the trained one is refused."""
        trained = trained_quantization(model)
        if self.quantization not in (None, trained) and trained is not Quantization.none:
            raise ConfigError(
                f"index.quantization={self.quantization.value}: model.quantization="
                f"{trained.value} trained the model's vectors for {trained.value} search; set "
                f"index.quantization={trained.value} (or leave it null), or "
                "model.quantization=none to search the vectors at another precision"
            )
        normalize = model.cosine_scores if self.normalize is None else self.normalize
        try:
            return replace(self, quantization=self.quantization or trained, normalize=normalize)
        except ValueError as error:  # a setting that does not fit the precision left to the model
            raise ConfigError(f"index.{error}") from None

    def build(
        self, batches: Iterable[tuple[Tensor, Tensor]], n_documents: int, score: ScoreFn
    ) -> SearchIndex:
        quantization, normalize = self._settings()
        self._set_threads()
        coverage, codes, store = RowCoverage(n_documents), None, None
        pending: list[tuple[np.ndarray, np.ndarray]] = []  # int8: waiting for the ranges
        waiting = 0
        for rows, reps in batches:
            vectors = reps.detach().float().cpu().numpy()
            if codes is None:
                codes = new_codes(quantization, self._dim(vectors.shape[1]))
                store = _Store(n_documents, codes.code_size, self.rescore is Rescore.full)
            pending.append((coverage.add(rows), vectors))
            waiting += len(rows)
            if not codes.calibrated and waiting >= min(self.calibration_size, n_documents):
                sample = np.concatenate([v for _, v in pending])[: self.calibration_size]
                codes.calibrate(cut(sample, self.dims, normalize))
            if codes.calibrated:
                for part_rows, part in pending:
                    store.put(part_rows, codes.encode(cut(part, self.dims, normalize)), part)
                pending, waiting = [], 0
        if codes is None or store is None:
            raise ValueError("cannot build a quantized index from no documents")
        coverage.check_complete()  # every row came, so every batch was encoded
        codes.add(store.codes)
        return QuantizedSearch(self, codes, store.full, normalize)

    def _dim(self, model_dim: int) -> int:
        """The dimensions searched: `dims`, which the model's vectors must have."""
        if self.dims is not None and self.dims > model_dim:
            raise ConfigError(
                f"index.dims={self.dims}: the model's vectors have {model_dim} dimensions; "
                f"choose at most {model_dim} (or null: all)"
            )
        return model_dim if self.dims is None else self.dims

    def open(self, folder: Path, score: ScoreFn) -> SearchIndex:
        quantization, normalize = self._settings()
        self._set_threads()
        saved = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
        asked = {"quantization": quantization.value, "dims": self.dims, "normalize": normalize}
        for key, value in asked.items():
            if saved[key] != value:
                raise ConfigError(
                    f"index.{key}={value}: the index at index.load={str(folder)!r} was built "
                    f"with {key}={saved[key]}; set index.{key}={saved[key]} or rebuild it"
                )
        full = None
        if self.rescore is Rescore.full:
            if not (folder / FULL_FILE).is_file():
                raise ConfigError(
                    f"index.rescore=full: the index at index.load={str(folder)!r} keeps no "
                    "full-precision vectors; rebuild it with index.rescore=full"
                )
            full = np.load(folder / FULL_FILE, mmap_mode="r")
        codes = read_codes(folder, quantization, saved["dim"])
        return QuantizedSearch(self, codes, full, normalize)

    def _settings(self) -> tuple[Quantization, bool]:
        """The resolved precision and normalisation (`fitted` sets them from the model)."""
        if self.quantization is None or self.normalize is None:
            raise ConfigError(
                "index.quantization / index.normalize are null (the model's): build the index "
                "through the commands or xpretrieval.search, which fit them to the model, or "
                "set them"
            )
        return self.quantization, self.normalize

    def _set_threads(self) -> None:
        if self.threads:
            import_faiss("quantized").omp_set_num_threads(self.threads)


class _Store:
    """The codes of every document row, and its full-precision vector when rescoring needs it."""

    def __init__(self, n_documents: int, code_size: int, keep_full: bool) -> None:
        self.codes = np.empty((n_documents, code_size), dtype=np.uint8)
        self.full: np.ndarray | None = None
        self.keep_full = keep_full

    def put(self, rows: np.ndarray, codes: np.ndarray, vectors: np.ndarray) -> None:
        self.codes[rows] = codes
        if self.keep_full:
            if self.full is None:
                self.full = np.empty((len(self.codes), vectors.shape[1]), dtype=np.float32)
            self.full[rows] = vectors


@dataclass
class QuantizedSearch:
    """Built codes (and full-precision vectors for `rescore=full`), searched as configured."""

    config: Quantized
    codes: Codes
    full: np.ndarray | None  # [n_documents, model dim] float32, for rescore=full
    normalize: bool  # whether vectors cut to `dims` are L2-normalised
    query_block: ClassVar[int] = 256  # queries rescored at a time (bounds the candidates' memory)

    def search(self, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        full = queries.detach().float().cpu().numpy()
        searched = cut(full, self.config.dims, self.normalize)
        total = int(self.codes.index.ntotal)
        k = min(k, total)
        rescore = self.config.rescore
        depth = k if rescore is Rescore.none else min(total, k * self.config.rescore_multiplier)
        scores, rows = self.codes.search(searched, depth)
        if rescore is not Rescore.none:
            rescoring = searched if rescore is Rescore.quantized else full
            scores, rows = self._rescored(rescoring, rows, k)
        return torch.from_numpy(np.ascontiguousarray(scores)), torch.from_numpy(rows)

    def _rescored(
        self, queries: np.ndarray, candidates: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best candidates by the dot product of `queries` with the candidates' decoded
        codes (rescore=quantized) or full-precision vectors (rescore=full)."""
        scores = np.empty((len(queries), k), dtype=np.float32)
        rows = np.empty((len(queries), k), dtype=np.int64)
        for start in range(0, len(queries), self.query_block):
            block = slice(start, start + self.query_block)
            ids = candidates[block]
            full = self.config.rescore is Rescore.full and self.full is not None
            documents = self.full[ids] if full else self.codes.decode(ids)
            rescored = np.einsum("qd,qkd->qk", queries[block], documents)
            best = np.argsort(-rescored, axis=1, kind="stable")[:, :k]
            scores[block] = np.take_along_axis(rescored, best, axis=1)
            rows[block] = np.take_along_axis(ids, best, axis=1)
        return scores, rows

    def statistics(self) -> dict[str, float]:
        """Documents, the codes' size (megabytes, bytes per document), the bits stored per
        dimension (32, 8 or 1: the precision), the dimensions searched and, for rescore=full,
        the bytes per document of the full-precision vectors kept beside the codes."""
        total, size = int(self.codes.index.ntotal), self.codes.code_size
        statistics = {
            "documents": total,
            "megabytes": total * size / 2**20,
            "bytes_per_document": size,
            "bits_per_dimension": self._quantization().bits,
            "dimensions": self.codes.dim,
        }
        if self.full is not None:
            statistics["rescore_bytes_per_document"] = self.full.shape[1] * 4
        return statistics

    def save(self, folder: Path) -> None:
        self.codes.save(folder)
        settings = {
            "quantization": self._quantization().value,
            "dims": self.config.dims,
            "normalize": self.normalize,
            "dim": self.codes.dim,
        }
        (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")
        if self.full is not None:
            np.save(folder / FULL_FILE, self.full)

    def _quantization(self) -> Quantization:
        return Quantization(self.config.quantization)


def cut(vectors: np.ndarray, dims: int | None, normalize: bool) -> np.ndarray:
    """The first `dims` dimensions of `vectors` (all when null or as many), L2-normalised when
    `normalize` and cut (a Matryoshka prefix is scored as a cosine, as its loss trained it)."""
    if dims is None or dims >= vectors.shape[1]:
        return np.ascontiguousarray(vectors, dtype=np.float32)
    prefix = vectors[:, :dims].astype(np.float32, copy=True)  # normalised in place below
    if normalize:
        norms = np.linalg.norm(prefix, axis=1, keepdims=True)
        prefix /= np.maximum(norms, np.finfo(np.float32).tiny)
    return prefix
