"""Retrieval models: configs that build encoders implementing the `Encoder` protocol."""

from xpretrieval.models.base import Encoder, ModelConfig
from xpretrieval.models.dense import Dense, DenseEncoder
from xpretrieval.models.pooling import Pooling

__all__ = ["Dense", "DenseEncoder", "Encoder", "ModelConfig", "Pooling"]
