"""Retrieval models: configs that build models of the kinds declared in `base`."""

from xpretrieval.core.config import register_package
from xpretrieval.models.base import (
    BiEncoder,
    DenseBiEncoder,
    ModelConfig,
    MultiVectorBiEncoder,
    PairScorer,
    PartedScore,
    Ranker,
    RetrievalModel,
    SparseBiEncoder,
    TermWeighted,
    TrainableModel,
)
from xpretrieval.models.bm25 import Bm25, Bm25Retriever
from xpretrieval.models.colbert import ColBERT, ColBERTEncoder
from xpretrieval.models.cross_encoder import CrossEncoder, CrossEncoderModel
from xpretrieval.models.dense import Dense, DenseEncoder
from xpretrieval.models.loading import load
from xpretrieval.models.pooling import Pooling
from xpretrieval.models.sparse_embed import SparseEmbed, SparseEmbedEncoder
from xpretrieval.models.splade import SparsePooling, Splade, SpladeEncoder

__all__ = [
    "BiEncoder",
    "Bm25",
    "Bm25Retriever",
    "ColBERT",
    "ColBERTEncoder",
    "CrossEncoder",
    "CrossEncoderModel",
    "Dense",
    "DenseBiEncoder",
    "DenseEncoder",
    "ModelConfig",
    "MultiVectorBiEncoder",
    "PairScorer",
    "PartedScore",
    "Pooling",
    "Ranker",
    "RetrievalModel",
    "SparseBiEncoder",
    "SparseEmbed",
    "SparseEmbedEncoder",
    "SparsePooling",
    "Splade",
    "SpladeEncoder",
    "TermWeighted",
    "TrainableModel",
    "load",
]

register_package(__name__)  # every module of the package: new components register themselves
