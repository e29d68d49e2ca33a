"""Model kinds, declared once as types, and the base of model configs.

A model says what it is by the class it implements: a `Ranker` ranks a collection itself
(BM25); of the trainable kinds, a `PairScorer` reads each (query, document) pair
(cross-encoders) and a `BiEncoder` represents queries and documents apart and scores them
against each other. Bi-encoders are
`DenseBiEncoder` (one vector per text), `MultiVectorBiEncoder` (token vectors, ColBERT) or
`TermWeighted` (vocabulary term weights that regularisers read), among which a
`SparseBiEncoder`'s representations *are* the term weights (SPLADE: inverted indexes serve
it). Losses, indexes and samplers state which kind they need; `compatibility` compares both
through a config's `model_class` before any weights load.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence, Sized
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from xpretrieval.core.device import Precision
from xpretrieval.models.encoding import Batching, TextEncoder, encode_texts

if TYPE_CHECKING:
    from xpretrieval.data.collection import Collection
    from xpretrieval.data.run import Run


class RetrievalModel(ABC):
    """Anything that ranks documents for queries, on a device."""

    @abstractmethod
    def to(self, device: torch.device | str) -> RetrievalModel:
        """The model on `device`."""


class TrainableModel(RetrievalModel):
    """A model with weights that training changes and `save` writes (a torch module)."""

    device: torch.device

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Write the model into the folder `path` (created if needed)."""

    @abstractmethod
    def prepare(self, collection: Collection) -> None:
        """Set what a fresh model learns from its training collection before the first step."""


class Ranker(RetrievalModel):
    """Ranks a whole collection from the texts, without trainable weights (BM25)."""

    @abstractmethod
    def rank(self, collection: Collection, k: int) -> tuple[Run, dict[str, float]]:
        """The k best documents of every query, and statistics of the ranking."""


class PairScorer(TrainableModel):
    """Reads a query and a document together: scores pairs, never indexes a collection."""

    @abstractmethod
    def score_texts(
        self, queries: Sequence[str], documents: Sequence[str], pairs: Tensor | None = None
    ) -> Tensor:
        """Scores `[n_queries, n_documents]` of the pairs marked in `pairs` (all when None);
        unscored pairs are -inf."""


class BiEncoder(TrainableModel):
    """Represents queries and documents separately and scores all pairs of representations.

    Each side tokenises texts (`tokenize`) and represents a batch of tokenised texts
    (`forward_tokens`, differentiable: training); `forward_queries` / `forward_documents` do
    both for one batch. `encode_queries` / `encode_documents` encode any number of texts for
    use: tokenised once, batched by length, without gradients, on the model's device, with a
    progress bar.
    """

    max_query_length: int
    max_document_length: int

    @abstractmethod
    def tokenize(self, texts: Sequence[str], is_query: bool) -> list[Sized]:
        """Each text's token sequence as this side reads it; its `len` is what a batch pads to."""

    @abstractmethod
    def forward_tokens(self, tokens: Sequence[Any], is_query: bool) -> Tensor:
        """Representations `[n, ...]` of one batch of `tokenize`'s sequences, with gradients
        when enabled."""

    def forward_queries(self, texts: Sequence[str]) -> Tensor:
        """Representations `[n, ...]` of one batch of queries, with gradients when enabled."""
        return self.forward_tokens(self.tokenize(texts, is_query=True), is_query=True)

    def forward_documents(self, texts: Sequence[str]) -> Tensor:
        """Representations `[n, ...]` of one batch of documents, with gradients when enabled."""
        return self.forward_tokens(self.tokenize(texts, is_query=False), is_query=False)

    def text_encoder(self, is_query: bool) -> TextEncoder:
        """The query or document side, as encoding runs it (tokenising before batching)."""
        return TextEncoder(
            partial(self.tokenize, is_query=is_query),
            partial(self.forward_tokens, is_query=is_query),
        )

    @abstractmethod
    def score(self, queries: Tensor, documents: Tensor) -> Tensor:
        """All-pairs scores, `[n_queries, n_documents]` (training and exact search share it)."""

    def encode_queries(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        precision: Precision = Precision.auto,
        max_batch_tokens: int | None = None,
    ) -> Tensor:
        """Representations of `texts` as queries, float32, in the order given; batches of at
        most `batch_size` texts and `max_batch_tokens` padded tokens (None: no token limit)."""
        return self._encode(True, texts, Batching(batch_size, max_batch_tokens), precision)

    def encode_documents(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        precision: Precision = Precision.auto,
        max_batch_tokens: int | None = None,
    ) -> Tensor:
        """Representations of `texts` as documents, float32, in the order given; batches as
        `encode_queries` makes them."""
        return self._encode(False, texts, Batching(batch_size, max_batch_tokens), precision)

    def _encode(
        self, is_query: bool, texts: Sequence[str], batching: Batching, precision: Precision
    ) -> Tensor:
        what = "queries" if is_query else "documents"
        if isinstance(texts, str):
            raise TypeError(f"encode_{what} takes a list of texts, got one string")
        encoder = self.text_encoder(is_query)
        # no texts: no rows, shaped as this model's (an empty text's encoding, none of it kept)
        empty = len(texts) == 0
        reps = encode_texts(
            encoder, [""] if empty else texts, batching, self.device, precision, f"encode {what}"
        )
        return reps[:0] if empty else reps

    def similarity(self, queries: Tensor, documents: Tensor) -> Tensor:
        """The model's scores of every query against every document, without gradients."""
        with torch.inference_mode():
            return self.score(queries.to(self.device), documents.to(self.device))


class DenseBiEncoder(BiEncoder):
    """Representations are single vectors `[n, dim]`, scored by dot product."""


class MultiVectorBiEncoder(BiEncoder):
    """Representations are several vectors per text (with their mask), scored by late
    interaction; only exact search serves them."""


class TermWeighted(BiEncoder):
    """Representations carry a weight for each vocabulary term, which sparsity regularisers
    and statistics read through `term_weights`."""

    @abstractmethod
    def term_weights(self, reps: Tensor) -> Tensor:
        """`[n, vocabulary]` term weights of representations."""

    @abstractmethod
    def vocabulary(self, ids: list[int]) -> list[str]:
        """The tokens of vocabulary ids."""

    def decode(self, reps: Tensor, top_k: int = 20) -> list[list[tuple[str, float]]]:
        """The `top_k` heaviest (token, weight) pairs of each representation, heaviest first."""
        weights = self.term_weights(reps).float()
        values, ids = weights.topk(min(top_k, weights.shape[-1]), dim=-1)
        decoded = []
        for row_values, row_ids in zip(values.tolist(), ids.tolist(), strict=True):
            tokens = self.vocabulary(row_ids)
            decoded.append([(t, w) for t, w in zip(tokens, row_values, strict=True) if w > 0])
        return decoded

    def sparsity(self, reps: Tensor) -> dict[str, float]:
        """Mean non-zero terms per representation (`active_dims`) and the share of zero
        weights (`sparsity_ratio`)."""
        return sparsity(self.term_weights(reps))


class SparseBiEncoder(TermWeighted):
    """Representations are the vocabulary term weights themselves (SPLADE), scored by dot
    product: inverted indexes and Anserini impact files serve them."""

    def term_weights(self, reps: Tensor) -> Tensor:
        return reps


class PartedScore(ABC):
    """A score that is the sum of named parts, each of which a loss term can train alone
    (`losses.<name>.part`)."""

    parts: ClassVar[tuple[str, ...]]

    @abstractmethod
    def score_parts(self, queries: Tensor, documents: Tensor) -> dict[str, Tensor]:
        """Each part's all-pairs scores, by name; they sum to `score`."""


def sparsity(weights: Tensor) -> dict[str, float]:
    """Mean number of non-zero entries per row, and the fraction of zero entries."""
    active = (weights != 0).sum(dim=-1).float().mean().item()
    return {"active_dims": active, "sparsity_ratio": 1.0 - active / weights.shape[-1]}


@dataclass
class ModelConfig(ABC):
    """Base of model configs: `model_class` is the class `build` returns, which tells, before
    any weights load, what kind of model the config makes."""

    model_class: ClassVar[type[RetrievalModel]]
    # fields that matter only when weights are created (a new head's bias), not once loaded
    initialisation_fields: ClassVar[tuple[str, ...]] = ()
    # fields that change how training computes, never what the model computes (activation
    # checkpointing): not saved with the model, not part of a saved index's provenance
    training_fields: ClassVar[tuple[str, ...]] = ()
    # fields that choose how a run computes the same model (the encoding backend): not saved
    # with the model, but part of a saved index's provenance
    runtime_fields: ClassVar[tuple[str, ...]] = ()
    # fields added after checkpoints of the kind were first saved: a saved file may lack them
    # (its model was saved before they existed, and their default is what it computed)
    added_fields: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def build(self) -> RetrievalModel:
        """Load the weights named by the config and return the ready model (on CPU)."""

    @classmethod
    def unsaved_fields(cls) -> tuple[str, ...]:
        """The fields a saved model's settings leave out: how it was trained or is run."""
        return (*cls.training_fields, *cls.runtime_fields)

    def as_saved(self) -> ModelConfig:
        """This config with the settings it leaves to its checkpoint set as the checkpoint was
        saved (what `build` will use); itself for models without saved settings."""
        return self

    @property
    def cosine_scores(self) -> bool:
        """Whether the built model's scores are cosines (unit vectors, dot product)."""
        return False

    def is_kind(self, kind: type | tuple[type, ...]) -> bool:
        """Whether the built model will be of `kind` (a model kind, or a tuple of them)."""
        return issubclass(self.model_class, kind)
