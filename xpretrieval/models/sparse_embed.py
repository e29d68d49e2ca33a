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
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.models.base import PartedScore
from xpretrieval.models.splade import MaskedLMConfig, MaskedLMEncoder, splade_weights

# bounds the matched embedding elements that scoring holds at once
SCORE_BLOCK_ELEMENTS = 2**24


class SparseEmbedEncoder(MaskedLMEncoder, PartedScore):
    """Encodes texts into packed `[n, k, 2 + embedding_dim]` representations."""

    parts: ClassVar[tuple[str, ...]] = ("sparse", "dense")

    def save_layout(self, path: Path) -> None:
        """None: sentence-transformers has no SparseEmbed (SPLADE's layout would lose the
        contextual embeddings)."""
        del path

    encoder_kwargs: ClassVar[dict[str, Any]] = {"output_hidden_states": True}
    head_modules: ClassVar[tuple[str, ...]] = ("projection",)

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

    def represent(
        self, output: Any, attention_mask: Tensor, special_tokens_mask: Tensor, is_query: bool
    ) -> Tensor:
        config = self.config
        token_mask = self.pooled_positions(attention_mask, special_tokens_mask)
        weights = splade_weights(output.logits, token_mask, config.pooling)
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


@register("model", "sparse_embed")
@dataclass
class SparseEmbed(MaskedLMConfig):
    """SPLADE term weights plus a contextual embedding per activated term."""

    model_class: ClassVar[type[SparseEmbedEncoder]] = SparseEmbedEncoder
    architecture_fields: ClassVar[tuple[str, ...]] = (
        "pooling",
        "exclude_special_tokens",
        "shared",
        "embedding_dim",
    )

    embedding_dim: int = 128  # size of each activated term's contextual embedding
    query_terms: int = 64  # activated terms kept per query (the k heaviest)
    doc_terms: int = 256  # activated terms kept per document

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("embedding_dim", "query_terms", "doc_terms"):
            check_range(name, getattr(self, name), at_least=1)


def term_contexts(logits: Tensor, hidden: Tensor, token_mask: Tensor, ids: Tensor) -> Tensor:
    """For each selected term `ids[b, t]`, the hidden states `[b, tokens, h]` averaged with the
    softmax over the pooled positions of that term's logits: `[b, k, h]`."""
    index = ids.unsqueeze(1).expand(-1, logits.shape[1], -1)  # [b, tokens, k]
    term_logits = logits.gather(2, index).float()
    # positions not pooled get no attention (a text without pooled positions: uniform)
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

    Only the (query term, document term) pairs that share a term are multiplied: document
    terms are sorted by term id, so the documents holding a query's term are one contiguous
    range (found by binary search), as in an inverted index. Queries are taken in groups
    whose matches fit `SCORE_BLOCK_ELEMENTS`, so memory stays bounded for any collection.
    """
    q_ids, q_weights, q_embeddings = unpack(queries)
    d_ids, d_weights, d_embeddings = unpack(documents)
    doc_terms, dim = d_embeddings.shape[1:]
    # the activated document terms, as postings sorted by term id
    active = (d_weights > 0).flatten().nonzero().squeeze(1)
    terms, order = d_ids.flatten()[active].sort()
    postings = active[order]  # positions in the flattened [n_d, doc_terms] layout
    # for each activated query term, the range of postings with the same term
    q_active = q_weights > 0
    starts = torch.searchsorted(terms, q_ids, right=False)
    counts = (torch.searchsorted(terms, q_ids, right=True) - starts) * q_active
    per_query = counts.sum(dim=1).tolist()
    sparse = q_weights.new_zeros(len(q_ids), len(d_ids))
    dense = q_embeddings.new_zeros(len(q_ids), len(d_ids))
    budget = max(1, SCORE_BLOCK_ELEMENTS // dim)
    first = 0
    while first < len(q_ids):
        last, matches = first, 0
        while last < len(q_ids) and (last == first or matches + per_query[last] <= budget):
            matches += per_query[last]
            last += 1
        rows = slice(first, last)
        sparse, dense = _add_matches(
            sparse,
            dense,
            rows,
            starts[rows],
            counts[rows],
            postings,
            doc_terms,
            q_weights,
            q_embeddings,
            d_weights.flatten(),
            d_embeddings.reshape(-1, dim),
        )
        first = last
    return sparse, dense


def _add_matches(
    sparse: Tensor,
    dense: Tensor,
    rows: slice,
    starts: Tensor,
    counts: Tensor,
    postings: Tensor,
    doc_terms: int,
    q_weights: Tensor,
    q_embeddings: Tensor,
    d_weights: Tensor,
    d_embeddings: Tensor,
) -> tuple[Tensor, Tensor]:
    """The scores with the contributions of the query `rows`' matching term pairs added."""
    flat_counts = counts.flatten()
    term = torch.repeat_interleave(
        torch.arange(len(flat_counts), device=counts.device), flat_counts
    )
    if len(term) == 0:
        return sparse, dense
    # the i-th match of a query term is posting starts + i
    offsets = torch.arange(len(term), device=term.device) - torch.repeat_interleave(
        flat_counts.cumsum(0) - flat_counts, flat_counts
    )
    posting = postings[starts.flatten()[term] + offsets]
    query = rows.start + torch.div(term, counts.shape[1], rounding_mode="floor")
    slot = term % counts.shape[1]
    document = torch.div(posting, doc_terms, rounding_mode="floor")
    sparse_part = q_weights[query, slot] * d_weights[posting]
    dense_part = (q_embeddings[query, slot] * d_embeddings[posting]).sum(dim=-1)
    index = (query, document)
    return (
        sparse.index_put(index, sparse_part.to(sparse.dtype), accumulate=True),
        dense.index_put(index, dense_part.to(dense.dtype), accumulate=True),
    )
