"""Retrieval models: configs that build encoders implementing the `Encoder` protocol."""

from xpretrieval.models.base import Encoder, ModelConfig
from xpretrieval.models.bm25 import Bm25
from xpretrieval.models.colbert import ColBERT, ColBERTEncoder
from xpretrieval.models.cross_encoder import CrossEncoder, CrossEncoderModel
from xpretrieval.models.dense import Dense, DenseEncoder
from xpretrieval.models.loading import load
from xpretrieval.models.pooling import Pooling
from xpretrieval.models.sparse_embed import SparseEmbed, SparseEmbedEncoder
from xpretrieval.models.splade import SparsePooling, Splade, SpladeEncoder

__all__ = [
    "Bm25",
    "ColBERT",
    "ColBERTEncoder",
    "CrossEncoder",
    "CrossEncoderModel",
    "Dense",
    "DenseEncoder",
    "Encoder",
    "ModelConfig",
    "Pooling",
    "SparseEmbed",
    "SparseEmbedEncoder",
    "SparsePooling",
    "Splade",
    "SpladeEncoder",
    "load",
]
