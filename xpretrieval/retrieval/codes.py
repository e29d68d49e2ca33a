"""Document vectors stored as codes in a flat faiss index, searched exhaustively over the codes:
float32 (`IndexFlatIP`), int8 (`IndexScalarQuantizer` QT_8bit: per-dimension ranges calibrated
on documents, float queries scored against the decoded codes) and binary (`IndexBinaryFlat`:
sign bits, Hamming distance, reported as the scores `1 - 2 * hamming / dim` of ±1/sqrt(dim)
vectors, which quantisation-aware training scores with)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from xpretrieval.models.quantization import Quantization
from xpretrieval.retrieval.faiss_index import import_faiss

CODES_FILE = "codes.index"


class Codes(ABC):
    """A flat index of `dim`-dimensional vectors as codes, rows in the order they were added."""

    def __init__(self, index: Any, dim: int) -> None:
        self.index, self.dim = index, dim

    @property
    def code_size(self) -> int:
        """Bytes stored per document."""
        return int(self.index.code_size)

    @property
    def calibrated(self) -> bool:
        """Whether `encode` can run (int8 needs its ranges first)."""
        return bool(self.index.is_trained)

    def calibrate(self, vectors: np.ndarray) -> None:
        """Set the quantiser's ranges from `vectors` (int8: each dimension's min and max)."""
        self.index.train(vectors)

    @abstractmethod
    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """`[n, code_size]` uint8 codes of float32 `vectors` `[n, dim]`."""

    @abstractmethod
    def add(self, codes: np.ndarray) -> None:
        """Index `codes`, after those already indexed."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) `[n_queries, k]` of the k best documents, best first."""

    @abstractmethod
    def decode(self, rows: np.ndarray) -> np.ndarray:
        """The float vectors `[*rows.shape, dim]` that the codes at `rows` stand for."""

    def save(self, folder: Path) -> None:
        import_faiss("quantized").write_index(self.index, str(folder / CODES_FILE))


class FlatCodes(Codes):
    """float32 or int8 codes of a faiss `IndexFlatCodes`, searched by inner product with the
    float query (asymmetric: only the documents are quantised)."""

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        return self.index.sa_encode(vectors)

    def add(self, codes: np.ndarray) -> None:
        self.index.add_sa_codes(codes)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, k)

    def decode(self, rows: np.ndarray) -> np.ndarray:
        return self.index.reconstruct_batch(rows.reshape(-1)).reshape(*rows.shape, self.dim)


class BinaryCodes(Codes):
    """Sign bits (positive: 1), padded with zeros to whole bytes on both sides, searched by
    Hamming distance between the query's and the documents' bits (symmetric)."""

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        return np.packbits(vectors > 0, axis=1)  # padding bits are 0 in queries and documents

    def add(self, codes: np.ndarray) -> None:
        self.index.add(codes)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        hamming, rows = self.index.search(self.encode(queries), k)
        return (1 - 2 * hamming / self.dim).astype(np.float32), rows

    def decode(self, rows: np.ndarray) -> np.ndarray:
        faiss = import_faiss("quantized")
        stored = faiss.rev_swig_ptr(self.index.xb.data(), self.index.ntotal * self.code_size)
        bits = np.unpackbits(stored.reshape(-1, self.code_size)[rows], axis=-1)[..., : self.dim]
        return ((2 * bits.astype(np.float32) - 1) / math.sqrt(self.dim)).astype(np.float32)

    def save(self, folder: Path) -> None:
        import_faiss("quantized").write_index_binary(self.index, str(folder / CODES_FILE))


def new_codes(quantization: Quantization, dim: int) -> Codes:
    """An empty flat index of `dim`-dimensional vectors at `quantization`'s precision."""
    faiss = import_faiss("quantized")
    if quantization is Quantization.binary:
        return BinaryCodes(faiss.IndexBinaryFlat(8 * math.ceil(dim / 8)), dim)
    if quantization is Quantization.int8:
        quantizer, metric = faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        return FlatCodes(faiss.IndexScalarQuantizer(dim, quantizer, metric), dim)
    return FlatCodes(faiss.IndexFlatIP(dim), dim)


def read_codes(folder: Path, quantization: Quantization, dim: int) -> Codes:
    """The codes that `Codes.save` wrote into `folder`."""
    faiss, path = import_faiss("quantized"), str(folder / CODES_FILE)
    if quantization is Quantization.binary:
        return BinaryCodes(faiss.read_index_binary(path), dim)
    return FlatCodes(faiss.read_index(path), dim)
