"""ColBERT (Khattab and Zaharia, SIGIR 2020): late interaction over token embeddings.

Each token's last hidden state is projected to `dim` and L2-normalised; a query scores a
document by MaxSim: for each query token, its best cosine with any document token, summed.
Queries are augmented: padded to `query_max_length` with [MASK] tokens, whose embeddings
let the model expand the query (they are scored but not attended to by the other tokens).

Representations are packed `[n, length, dim + 1]` (the last column: 1 for a token, 0 for
padding), padded to the configured maximum length so that batches stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.models.base import MultiVectorBiEncoder
from xpretrieval.models.transformer import TokenizedText, TransformerBiEncoder, TransformerConfig

# bounds the [queries, documents, query tokens, document tokens] similarities held at once
SCORE_BLOCK_ELEMENTS = 2**24


class ColBERTEncoder(TransformerBiEncoder, MultiVectorBiEncoder):
    """Encodes texts into packed token embeddings; scores by MaxSim."""

    head_modules: ClassVar[tuple[str, ...]] = ("projection",)

    def __init__(
        self,
        config: ColBERT,
        tokenizer: PreTrainedTokenizerBase,
        query_encoder: PreTrainedModel,
        document_encoder: PreTrainedModel | None = None,
    ) -> None:
        super().__init__(config, tokenizer, query_encoder, document_encoder)
        self.projection = nn.Linear(query_encoder.config.hidden_size, config.dim, bias=False)
        if config.query_augmentation and tokenizer.mask_token_id is None:
            raise ValueError(
                f"{config.name_or_path}: its tokenizer has no mask token for query "
                "augmentation; set model.query_augmentation=false"
            )

    def forward_tokens(self, tokens: Sequence[TokenizedText], is_query: bool) -> Tensor:
        if not (is_query and self.config.query_augmentation):
            return super().forward_tokens(tokens, is_query)
        batch = self.pad(tokens, padding="max_length", max_length=self.max_query_length)
        batch = batch.to(self.device)
        del batch["special_tokens_mask"]
        padding = batch["attention_mask"] == 0
        batch["input_ids"] = batch["input_ids"].masked_fill(padding, self.tokenizer.mask_token_id)
        output = self.running(self.query_encoder)(**batch)
        # every position is scored, [MASK] included; the encoder did not attend to the masks
        return self._pack(output.last_hidden_state, torch.ones_like(batch["attention_mask"]), True)

    def represent(
        self, output: Any, attention_mask: Tensor, special_tokens_mask: Tensor, is_query: bool
    ) -> Tensor:
        return self._pack(output.last_hidden_state, attention_mask, is_query)

    def _pack(self, hidden: Tensor, mask: Tensor, is_query: bool) -> Tensor:
        embeddings = F.normalize(self.projection(hidden).float(), dim=-1)
        packed = torch.cat([embeddings * mask.unsqueeze(-1), mask.unsqueeze(-1).float()], dim=-1)
        return F.pad(packed, (0, 0, 0, self.max_length(is_query) - packed.shape[1]))

    def score(self, queries: Tensor, documents: Tensor) -> Tensor:
        """All-pairs MaxSim, `[n_queries, n_documents]`."""
        return maxsim(queries, documents)


@register("model", "colbert")
@dataclass
class ColBERT(TransformerConfig):
    """Multi-vector bi-encoder scored by MaxSim."""

    model_class: ClassVar[type[ColBERTEncoder]] = ColBERTEncoder
    architecture_fields: ClassVar[tuple[str, ...]] = ("shared", "dim", "query_augmentation")

    dim: int = 128  # size of each token's projected embedding
    query_augmentation: bool = True  # pad queries to query_max_length with [MASK] tokens
    query_max_length: int = 32
    doc_max_length: int = 180

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("dim", self.dim, at_least=1)


def maxsim(queries: Tensor, documents: Tensor) -> Tensor:
    """sum over query tokens of max over document tokens of the dot product, for all pairs of
    packed representations; padding tokens take part on neither side."""
    q, q_mask = queries[..., :-1], queries[..., -1]
    d, d_mask = documents[..., :-1], documents[..., -1]
    per_pair = q.shape[1] * d.shape[1]
    block = max(1, SCORE_BLOCK_ELEMENTS // max(1, len(q) * per_pair))
    scores = []
    for start in range(0, len(d), block):
        similarity = torch.einsum("qid,njd->qnij", q, d[start : start + block])
        padding = d_mask[start : start + block] == 0  # [n, j]
        similarity = similarity.masked_fill(padding[None, :, None, :], float("-inf"))
        best = similarity.amax(dim=-1).nan_to_num(neginf=0.0)  # a document of padding only: 0
        scores.append((best * q_mask[:, None, :]).sum(dim=-1))
    return torch.cat(scores, dim=1)
