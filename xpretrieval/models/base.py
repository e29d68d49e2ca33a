"""The contract every retrieval model keeps, and the base of model configs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Encoder(Protocol):
    """Encodes queries and documents and scores them against each other.

    `score(q, d)` returns all pairs, `[n_queries, n_documents]`, so that training (in-batch
    negatives) and retrieval (exact search) share one scoring function.

    Optional capabilities, used when present: `term_weights(reps) -> [n, vocab]` (sparse
    models; regularisers read it) and `score_parts(q, d) -> {name: [n_q, n_d]}` (a score that
    is a sum of named parts, each of which a loss term can train: `losses.<name>.part`).
    """

    max_query_length: int
    max_document_length: int

    def encode_queries(self, texts: Sequence[str]) -> Tensor: ...

    def encode_documents(self, texts: Sequence[str]) -> Tensor: ...

    def score(self, queries: Tensor, documents: Tensor) -> Tensor: ...

    def save(self, path: str | Path) -> None: ...

    def to(self, device: torch.device) -> Encoder: ...


@dataclass
class ModelConfig(ABC):
    """Base of model configs; a subclass builds its `Encoder` from a checkpoint name or path.

    The class variables say, before any weights load, what the built encoder offers, so
    that a config combining it with a loss that needs more fails at start-up.
    """

    trainable: ClassVar[bool] = True  # False: only `evaluate` applies (BM25)
    reranks_only: ClassVar[bool] = False  # True: scores text pairs, needs evaluation.rerank
    has_term_weights: ClassVar[bool] = False  # the encoder has `term_weights` (sparse models)
    dense_vectors: ClassVar[bool] = False  # representations are single [n, dim] vectors
    score_parts: ClassVar[tuple[str, ...]] = ()  # names `score_parts` returns, if any
    # fields that matter only when weights are created (a new head's bias), not once loaded
    initialisation_fields: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def build(self) -> Encoder:
        """Load the weights named by the config and return the ready encoder (on CPU)."""
