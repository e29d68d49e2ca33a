"""SparseEmbed (Kong et al., SIGIR 2023, "SparseEmbed: Learning Sparse Lexical
Representations with Contextual Embeddings for Retrieval").

SPLADE term weights, of which each text keeps its k heaviest terms, and for each kept term
a contextual embedding: the tokens' hidden states averaged with the softmax, over the
text's tokens, of that term's MLM logits, then projected. A query and a document score
`sparse + dense`: the dot product of their term weights plus, for each term both activate,
the dot product of the two terms' embeddings.

Representations are packed in one tensor `[n, k, 2 + dim]` (term id, weight, embedding),
so that they travel through encoding and indexes like any other; a term with weight 0 is
not activated (a short text may activate fewer than k terms).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from xpretrieval.config import register
from xpretrieval.models.splade import MaskedLMConfig, SpladeEncoder, splade_weights
from xpretrieval.models.transformer import TransformerConfig

PROJECTION_FILE = "sparse_embed_projection.safetensors"
# bounds the [documents, queries, terms, dim] block that scoring gathers at once
SCORE_BLOCK_ELEMENTS = 2**24


@register("model", "sparse_embed")
@dataclass
class SparseEmbed(MaskedLMConfig):
    """SPLADE term weights plus a contextual embedding per activated term."""

    architecture_fields: ClassVar[tuple[str, ...]] = ("pooling", "shared", "embedding_dim")
    score_parts: ClassVar[tuple[str, ...]] = ("sparse", "dense")

    embedding_dim: int = 128  # size of each activated term's contextual embedding
    query_terms: int = 64  # activated terms kept per query (the k heaviest)
    doc_terms: int = 256  # activated terms kept per document

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("embedding_dim", "query_terms", "doc_terms"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def build(self) -> SparseEmbedEncoder:
        return SparseEmbedEncoder.from_config(self)


class SparseEmbedEncoder(SpladeEncoder):
    """Encodes texts into packed `[n, k, 2 + embedding_dim]` representations."""

    encoder_kwargs: ClassVar[dict[str, Any]] = {"output_hidden_states": True}

    def __init__(
        self,
        config: SparseEmbed,
        tokenizer: PreTrainedTokenizerBase,
        query_encoder: PreTrainedModel,
        document_encoder: PreTrainedModel | None = None,
    ) -> None:
        super().__init__(config, tokenizer, query_encoder, document_encoder)
        hidden = query_encoder.config.hidden_size
        # shared by queries and documents, so that their term embeddings meet in one space
        self.projection = nn.Linear(hidden, config.embedding_dim, bias=False)

    @classmethod
    def from_config(cls, config: TransformerConfig) -> SparseEmbedEncoder:
        """Load the encoder(s) and, from a saved SparseEmbed model, its projection."""
        model = super().from_config(config)
        saved = Path(config.name_or_path) / PROJECTION_FILE
        if saved.is_file():
            model.projection.load_state_dict(load_file(saved))
        return model

    def save(self, path: str | Path) -> None:
        super().save(path)
        save_file(self.projection.state_dict(), Path(path) / PROJECTION_FILE)

    @classmethod
    def load(
        cls, path: str | Path, config_type: type[SparseEmbed] = SparseEmbed
    ) -> SparseEmbedEncoder:
        """Load a SparseEmbed model written by `save`, with the config it was saved with."""
        return super().load(path, config_type)

    def represent(
        self, output: Any, attention_mask: Tensor, special_tokens_mask: Tensor, is_query: bool
    ) -> Tensor:
        config = self.config
        token_mask = attention_mask * (1 - special_tokens_mask)
        weights = splade_weights(output.logits, token_mask, config.pooling, None)
        k = min(config.query_terms if is_query else config.doc_terms, weights.shape[-1])
        values, ids = weights.topk(k, dim=-1)
        contextual = term_contexts(output.logits, output.hidden_states[-1], token_mask, ids)
        embeddings = torch.relu(self.projection(contextual))
        return pack(ids, values, embeddings)

    def score(self, queries: Tensor, documents: Tensor) -> Tensor:
        """All-pairs `sparse + dense` scores, `[n_queries, n_documents]`."""
        sparse, dense = sparse_embed_scores(queries, documents)
        return sparse + dense

    def score_parts(self, queries: Tensor, documents: Tensor) -> dict[str, Tensor]:
        """The term-weight (sparse) and shared-term embedding (dense) parts of `score`."""
        sparse, dense = sparse_embed_scores(queries, documents)
        return {"sparse": sparse, "dense": dense}

    def term_weights(self, reps: Tensor) -> Tensor:
        """Vocabulary-sized term weights `[n, vocab]` (zero outside the activated terms)."""
        ids, weights, _ = unpack(reps)
        vocabulary = self.query_encoder.get_output_embeddings().out_features
        return weights.new_zeros(len(reps), vocabulary).scatter(1, ids, weights)


def term_contexts(logits: Tensor, hidden: Tensor, token_mask: Tensor, ids: Tensor) -> Tensor:
    """For each selected term `ids[b, t]`, the hidden states `[b, tokens, h]` averaged with the
    softmax over the kept tokens of that term's logits: `[b, k, h]`."""
    index = ids.unsqueeze(1).expand(-1, logits.shape[1], -1)  # [b, tokens, k]
    term_logits = logits.gather(2, index).float()
    # padding and special tokens get no attention (a text without kept tokens: uniform)
    term_logits = term_logits.masked_fill(~token_mask.bool().unsqueeze(-1), -1e4)
    attention = torch.softmax(term_logits, dim=1)
    return attention.transpose(1, 2).to(hidden.dtype) @ hidden


def pack(ids: Tensor, weights: Tensor, embeddings: Tensor) -> Tensor:
    """One float32 tensor `[n, k, 2 + dim]`; term ids are exact in float32 below 2**24."""
    columns = [ids.float().unsqueeze(-1), weights.float().unsqueeze(-1), embeddings.float()]
    return torch.cat(columns, dim=-1)


def unpack(reps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(term ids `[n, k]` long, weights `[n, k]`, embeddings `[n, k, dim]`) of packed reps."""
    return reps[..., 0].long(), reps[..., 1], reps[..., 2:]


def sparse_embed_scores(queries: Tensor, documents: Tensor) -> tuple[Tensor, Tensor]:
    """All-pairs (sparse, dense) scores of packed representations, each `[n_q, n_d]`.

    Documents are taken in blocks: a block's table from vocabulary term to slot finds, for
    every query term, the document's slot holding the same term (or an empty slot), so
    only matching terms are multiplied and memory stays bounded for any collection.
    """
    q_ids, q_weights, q_embeddings = unpack(queries)
    d_ids, d_weights, d_embeddings = unpack(documents)
    n_queries, query_terms = q_ids.shape
    doc_terms, dim = d_embeddings.shape[1:]
    vocabulary = int(max(q_ids.max(), d_ids.max())) + 2  # the last column: "not activated"
    absent = vocabulary - 1
    q_ids = q_ids.masked_fill(q_weights <= 0, absent)
    # one empty slot (weight 0, zero embedding) that absent terms point to
    d_weights = torch.cat([d_weights, d_weights.new_zeros(len(d_ids), 1)], dim=1)
    d_embeddings = torch.cat([d_embeddings, d_embeddings.new_zeros(len(d_ids), 1, dim)], dim=1)
    block = max(1, SCORE_BLOCK_ELEMENTS // max(1, n_queries * query_terms * dim))
    sparse, dense = [], []
    for start in range(0, len(d_ids), block):
        stop = min(start + block, len(d_ids))
        ids = d_ids[start:stop].masked_fill(d_weights[start:stop, :-1] <= 0, absent)
        slots = torch.full((stop - start, vocabulary), doc_terms, device=ids.device)
        positions = torch.arange(doc_terms, device=ids.device).expand_as(ids)
        slots.scatter_(1, ids, positions)
        slots[:, absent] = doc_terms
        matched = slots[:, q_ids.flatten()].view(stop - start, n_queries, query_terms)
        weights = d_weights[start:stop].gather(1, matched.flatten(1)).view_as(matched)
        rows = torch.arange(start, stop, device=ids.device).view(-1, 1, 1)
        embeddings = d_embeddings[rows, matched]  # [block, n_q, query_terms, dim]
        sparse.append(torch.einsum("qt,dqt->qd", q_weights, weights))
        dense.append(torch.einsum("qte,dqte->qd", q_embeddings, embeddings))
    return torch.cat(sparse, dim=1), torch.cat(dense, dim=1)
