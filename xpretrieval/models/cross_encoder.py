"""Cross-encoder re-rankers: the transformer reads a query and a document together and one
logit scores their relevance, on an encoder (monoBERT; Nogueira and Cho 2019) or on a
decoder-only LLM (RankLLaMA; Ma et al. 2023). It cannot index a collection: it re-ranks a
first stage's candidates (`evaluation.rerank`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from transformers import AutoModelForSequenceClassification, BatchEncoding, PreTrainedModel

from xpretrieval.core.config import register
from xpretrieval.models.base import PairScorer
from xpretrieval.models.lora import unwrapped
from xpretrieval.models.pooling import Pooling, pool
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
        batch = self.tokenize_pairs(
            [queries[i] for i in rows.tolist()], [documents[j] for j in columns.tolist()]
        ).to(self.device)
        logits = self.pair_logits(batch).float()
        scores = torch.full((len(queries), len(documents)), float("-inf"), device=self.device)
        return scores.index_put((rows.to(self.device), columns.to(self.device)), logits)

    def tokenize_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> BatchEncoding:
        """The prompted pairs as the tokenizer joins them (BERT: `[CLS] q [SEP] d [SEP]`;
        LLaMA: `<s> q <s> d`), padded on the configured side: at most query_max_length +
        doc_max_length tokens, the longer text cut first, the EOS token last when
        `append_eos` (truncation keeps room for it)."""
        eos = self.config.append_eos
        encoded = self.tokenizer(
            self.prompted(queries, is_query=True),
            self.prompted(documents, is_query=False),
            truncation="longest_first",
            max_length=self.max_query_length + self.max_document_length - eos,
            return_attention_mask=False,
        )
        if eos:
            for ids in encoded["input_ids"]:
                ids.append(self.tokenizer.eos_token_id)
            for types in encoded.get("token_type_ids", []):
                types.append(types[-1])  # the EOS belongs to the document's segment
        return self.tokenizer.pad(encoded, return_tensors="pt")

    def pair_logits(self, batch: BatchEncoding) -> Tensor:
        """One relevance logit per tokenised pair: for a decoder-only classifier, its `score`
        layer on the hidden state of the pair's last real token (the EOS with `append_eos`),
        found from the attention mask whichever side pads; an encoder's own head otherwise
        (BERT's, over [CLS])."""
        classifier = unwrapped(self.query_encoder)  # LoRA adapters stay in place and active
        head = last_token_head(classifier)
        if head is None:
            return self.running(self.query_encoder)(**batch).logits[:, 0]
        backbone = getattr(classifier, classifier.base_model_prefix)
        hidden = self.running(backbone)(**batch, use_cache=False).last_hidden_state
        return head(pool(hidden, batch["attention_mask"], Pooling.last))[:, 0]


def last_token_head(classifier: PreTrainedModel) -> nn.Module | None:
    """The `score` layer of a decoder-only Hugging Face sequence classifier (LLaMA, Mistral,
    Qwen, Gemma, GPT-2...): it scores the last token's hidden state, the only one whose causal
    attention saw the whole pair. None for an encoder's classifier, which reads the first."""
    head = getattr(classifier, "score", None)  # encoder-decoders' heads are named otherwise
    return head if isinstance(head, nn.Module) else None


@register("model", "cross_encoder")
@dataclass
class CrossEncoder(TransformerConfig):
    """A sequence-classification head with one output over the (query, document) pair, at
    most query_max_length + doc_max_length tokens (the longer text is cut first). On an
    encoder, `[CLS] query [SEP] document [SEP]` read by its own head; on a decoder-only LLM
    (RankLLaMA: model=llm_reranker), the pair closed by the EOS token (`append_eos`) and the
    head on its last real token, with LoRA through the `lora_*` fields."""

    model_class: ClassVar[type[CrossEncoderModel]] = CrossEncoderModel
    architecture_fields: ClassVar[tuple[str, ...]] = ()
