"""Quantisation-aware training of dense vectors: in the training forward, representations take
the values a binary or int8 index will search (`retrieval/quantized.py`), and gradients pass
straight through the rounding (Bengio et al. 2013, "Estimating or propagating gradients through
stochastic neurons"), so the model learns vectors that survive quantisation."""

from __future__ import annotations

import math
from enum import Enum

import torch
from torch import Tensor

INT8_LEVELS = 255  # faiss's QT_8bit: codes 0..255 spread over each dimension's [min, max]


class Quantization(str, Enum):
    """How document vectors are stored: float32 (none), 8-bit codes, or sign bits."""

    none = "none"
    int8 = "int8"
    binary = "binary"

    @property
    def bits(self) -> int:
        """Bits stored per dimension."""
        return {"none": 32, "int8": 8, "binary": 1}[self.value]


class QuantizationAware:
    """A model config with a `quantization` field: the precision its vectors are trained for,
    which the index searches by default (`Quantized.fitted`) and other indexes refuse."""

    quantization: Quantization | None


def trained_quantization(config: object) -> Quantization:
    """The precision a model config's vectors were trained for (none for other models)."""
    if isinstance(config, QuantizationAware) and config.quantization is not None:
        return Quantization(config.quantization)
    return Quantization.none


def binary_values(vectors: Tensor) -> Tensor:
    """Sign vectors scaled to unit length, `±1/sqrt(dim)` (positive: +1): their dot products
    are `1 - 2 * hamming / dim`, the scores of a binary index."""
    signs = torch.where(vectors > 0, 1.0, -1.0).to(vectors.dtype)
    return signs / math.sqrt(vectors.shape[-1])


def int8_values(vectors: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """`vectors` through faiss's 8-bit scalar quantiser with per-dimension ranges
    [low, high]: code = floor(255 (x - low) / (high - low)) clamped to 0..255, decoded to
    `low + (code + 0.5) / 255 * (high - low)` (what an int8 index scores queries against)."""
    width = (high - low).clamp_min(torch.finfo(vectors.dtype).tiny)
    codes = ((vectors - low) / width * INT8_LEVELS).floor().clamp(0, INT8_LEVELS)
    return low + (codes + 0.5) / INT8_LEVELS * width


def straight_through(vectors: Tensor, quantized: Tensor) -> Tensor:
    """`quantized` in the forward pass, the gradient of `vectors` (identity) in the backward."""
    return vectors + (quantized - vectors).detach()


def quantize_for_training(vectors: Tensor, quantization: Quantization, is_query: bool) -> Tensor:
    """Representations as the index searches them, with straight-through gradients: binary
    quantises both sides (Hamming search compares sign bits); int8 the documents only (the
    float query is scored against their decoded codes), with ranges calibrated per dimension
    on the batch's documents, as the index calibrates them on the collection's."""
    if quantization is Quantization.binary:
        return straight_through(vectors, binary_values(vectors.detach()))
    if quantization is Quantization.int8 and not is_query:
        detached = vectors.detach()
        low, high = detached.min(dim=0).values, detached.max(dim=0).values
        return straight_through(vectors, int8_values(detached, low, high))
    return vectors
