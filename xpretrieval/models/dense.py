"""Dense bi-encoder over any Hugging Face encoder (`AutoModel`): one pooled vector per text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from xpretrieval.core.config import register
from xpretrieval.models.base import DenseBiEncoder
from xpretrieval.models.pooling import Pooling, pool
from xpretrieval.models.quantization import (
    Quantization,
    QuantizationAware,
    quantize_for_training,
)
from xpretrieval.models.sentence_transformers_layout import write_dense_layout
from xpretrieval.models.transformer import TransformerBiEncoder, TransformerConfig, saved_or


class DenseEncoder(TransformerBiEncoder, DenseBiEncoder):
    """Encodes texts with a Hugging Face encoder and pools them into vectors."""

    def represent(
        self, output: Any, attention_mask: Tensor, special_tokens_mask: Tensor, is_query: bool
    ) -> Tensor:
        vectors = pool(output.last_hidden_state, attention_mask, self.config.pooling)
        vectors = F.normalize(vectors, dim=-1) if self.config.normalize else vectors
        if self.training:  # quantisation-aware training: the values the index will search
            vectors = quantize_for_training(vectors, self.config.quantization, is_query)
        return vectors

    def score(self, queries: Tensor, documents: Tensor) -> Tensor:
        """All-pairs dot products, `[n_queries, n_documents]`."""
        return queries @ documents.T

    def save_layout(self, path: Path) -> None:
        """sentence-transformers' Transformer, Pooling and Normalize files: the saved folder
        loads in `SentenceTransformer` and encodes as this model does (documents' length)."""
        config = self.config
        hidden = self.query_encoder.config.hidden_size
        lengths = self.layout_lengths()
        pooling, prompts = config.pooling.value, self.prompts()
        write_dense_layout(path, hidden, pooling, config.normalize, lengths, prompts)


@register("model", "dense")
@dataclass
class Dense(TransformerConfig, QuantizationAware):
    """Bi-encoder: `score(q, d) = <pool(enc(q)), pool(enc(d))>`, a cosine when `normalize`."""

    model_class: ClassVar[type[DenseEncoder]] = DenseEncoder
    architecture_fields: ClassVar[tuple[str, ...]] = ("pooling", "normalize", "shared")
    added_fields: ClassVar[tuple[str, ...]] = ("quantization",)
    layout_kind: ClassVar[str | None] = "dense"

    # null: as the checkpoint was saved (a sentence-transformers folder's Pooling, a saved
    # xpretrieval model's setting), else mean
    pooling: Pooling | None = saved_or(Pooling.mean)
    # L2-normalise vectors, making the dot-product score a cosine; null: as the checkpoint was
    # saved (a Normalize module or not), else true
    normalize: bool | None = saved_or(True)
    # quantisation-aware training for a quantised index (index=quantized): none, int8 or
    # binary; training forwards the quantised values with straight-through gradients, and
    # evaluation searches with that precision; null: as the checkpoint was saved, else none
    quantization: Quantization | None = saved_or(Quantization.none)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pooling is not None:
            self.pooling = Pooling(self.pooling)  # built in Python, "mean" means Pooling.mean
        if self.quantization is not None:
            self.quantization = Quantization(self.quantization)

    @property
    def cosine_scores(self) -> bool:
        normalize = self.normalize
        return bool(self.as_saved().normalize if normalize is None else normalize)
