"""Inference-free SPLADE (as OpenSearch's neural sparse models and sentence-transformers'
`SparseStaticEmbedding` route them; Geng et al. 2024, "Towards Competitive Search Relevance
For Inference-Free Learned Sparse Retrievers"): documents are encoded by SPLADE's masked LM,
queries by a learned weight per vocabulary token, with no transformer at query time.

A query's representation is `weight[t]` for each token t it contains (special tokens left
out, repeats counted once), zero elsewhere; it meets a document's SPLADE term weights by a
dot product, so the inverted index serves it. The weights start at 1, or at each token's IDF
over the training documents (`query_weights_init=idf`), and train with the document encoder;
sparsity is asked of documents only (the experiment's FLOPS term has `query_weight: 0`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from xpretrieval.core.config import register
from xpretrieval.data.collection import Collection
from xpretrieval.models.sentence_transformers_layout import write_inference_free_layout
from xpretrieval.models.splade import Splade, SpladeEncoder
from xpretrieval.models.transformer import TokenizedText


class QueryWeightsInit(Enum):
    """Lower-case names, because configs select members by name."""

    ones = "ones"  # every token weighs 1 (sentence-transformers' default)
    idf = "idf"  # BM25's IDF of the token over the training documents


class StaticWeights(nn.Module):
    """One weight per vocabulary token (a module, so that it is saved as a head)."""

    def __init__(self, vocabulary: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(vocabulary))


class InferenceFreeSpladeEncoder(SpladeEncoder):
    """Documents through SPLADE's masked LM; queries through `query_weights`."""

    head_modules: ClassVar[tuple[str, ...]] = ("query_weights",)

    def __init__(
        self,
        config: InferenceFreeSplade,
        tokenizer: PreTrainedTokenizerBase,
        query_encoder: PreTrainedModel,
        document_encoder: PreTrainedModel | None = None,
    ) -> None:
        super().__init__(config, tokenizer, query_encoder, document_encoder)
        vocabulary = query_encoder.get_output_embeddings().out_features
        self.query_weights = StaticWeights(vocabulary)

    def tokenize(self, texts: Sequence[str], is_query: bool) -> list[TokenizedText]:
        """Queries are their words' own tokens, without CLS and SEP."""
        if not is_query:
            return super().tokenize(texts, is_query)
        encoded = self.tokenizer(
            self.prompted(texts, is_query=True),
            truncation=True,
            max_length=self.max_query_length,
            add_special_tokens=False,
        )
        return [TokenizedText(ids, [0] * len(ids)) for ids in encoded["input_ids"]]

    def forward_tokens(self, tokens: Sequence[TokenizedText], is_query: bool) -> Tensor:
        if not is_query:
            return super().forward_tokens(tokens, is_query)
        batch = self.pad(tokens).to(self.device)
        weights = self.query_weights.weight
        present = torch.zeros(len(tokens), len(weights), device=self.device)
        present.scatter_(1, batch["input_ids"], batch["attention_mask"].to(present.dtype))
        return present * weights

    def exports_side(self, is_query: bool) -> bool:
        """Queries are a lookup of their tokens' weights: no transformer to export."""
        return not is_query

    def prepare(self, collection: Collection) -> None:
        """IDF-initialise untouched query weights from `collection`'s documents."""
        weights = self.query_weights.weight
        if self.config.query_weights_init is not QueryWeightsInit.idf or not bool(
            (weights == 1).all()
        ):
            return
        documents = collection.document_texts()
        frequency: Counter[int] = Counter()
        for start in range(0, len(documents), 1024):
            encoded = self.tokenizer(documents[start : start + 1024], add_special_tokens=False)
            for ids in encoded["input_ids"]:
                frequency.update(set(ids))
        n = len(documents)
        idf = [
            math.log(1 + (n - frequency[t] + 0.5) / (frequency[t] + 0.5))
            for t in range(len(weights))
        ]
        with torch.no_grad():
            weights.copy_(torch.tensor(idf, dtype=weights.dtype))

    def encoder_folders(self) -> dict[str, PreTrainedModel]:
        return {"document": self.query_encoder}  # the query side has no transformer

    def save_layout(self, path: Path) -> None:
        """sentence-transformers' Router: `SparseStaticEmbedding` for queries, `MLMTransformer`
        and `SpladePooling` for documents, as `SparseEncoder` loads inference-free models."""
        config = self.config
        write_inference_free_layout(
            path,
            self.query_weights.weight.detach().cpu(),
            config.pooling.value,
            self.max_document_length,
            self.prompts(),
            self.tokenizer,
        )


@register("model", "inference_free_splade")
@dataclass
class InferenceFreeSplade(Splade):
    """SPLADE documents, learned static query weights: queries cost a tokenisation."""

    model_class: ClassVar[type[InferenceFreeSpladeEncoder]] = InferenceFreeSpladeEncoder
    layout_kind: ClassVar[str | None] = "inference_free_splade"

    query_weights_init: QueryWeightsInit = QueryWeightsInit.ones

    def __post_init__(self) -> None:
        super().__post_init__()
        self.query_weights_init = QueryWeightsInit(self.query_weights_init)  # "idf" from Python
        if not self.shared:
            raise ValueError("shared must be true: only documents go through the transformer")
