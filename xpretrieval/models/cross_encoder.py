"""Cross-encoder re-ranker (monoBERT; Nogueira and Cho 2019): the transformer reads a query
and a document together and one logit scores their relevance. It cannot index a collection:
it re-ranks a first stage's candidates (`evaluation.rerank`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from xpretrieval.core.config import register
from xpretrieval.models.base import PairScorer
from xpretrieval.models.transformer import TransformerConfig, TransformerModel


class CrossEncoderModel(TransformerModel, PairScorer):
    """Scores (query, document) pairs; loading, saving and config checks as the bi-encoders."""

    auto_class = AutoModelForSequenceClassification

    @classmethod
    def from_pretrained(
        cls, path: str | Path, hf_config: Any, config: TransformerConfig
    ) -> PreTrainedModel:
        hf_config.num_labels = 1  # one relevance logit
        return cls.auto_class.from_pretrained(path, config=hf_config)

    def score_texts(
        self, queries: Sequence[str], documents: Sequence[str], pairs: Tensor | None = None
    ) -> Tensor:
        """Relevance logits `[n_queries, n_documents]` of the pairs marked in `pairs` (all when
        None); unscored pairs are -inf."""
        if pairs is None:
            pairs = torch.ones(len(queries), len(documents), dtype=torch.bool)
        rows, columns = pairs.nonzero(as_tuple=True)
        batch = self.tokenizer(
            self.prompted([queries[i] for i in rows.tolist()], is_query=True),
            self.prompted([documents[j] for j in columns.tolist()], is_query=False),
            padding=True,
            truncation="longest_first",
            max_length=self.max_query_length + self.max_document_length,
            return_tensors="pt",
        ).to(self.device)
        logits = self.query_encoder(**batch).logits[:, 0].float()
        scores = torch.full((len(queries), len(documents)), float("-inf"), device=self.device)
        return scores.index_put((rows.to(self.device), columns.to(self.device)), logits)


@register("model", "cross_encoder")
@dataclass
class CrossEncoder(TransformerConfig):
    """A sequence-classification head with one output over `[CLS] query [SEP] document [SEP]`
    (at most query_max_length + doc_max_length tokens; the longer text is cut first)."""

    model_class: ClassVar[type[CrossEncoderModel]] = CrossEncoderModel
    architecture_fields: ClassVar[tuple[str, ...]] = ()
