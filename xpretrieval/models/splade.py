"""SPLADE: sparse lexical representations from a masked-LM head (Formal et al., SIGIR 2021;
SPLADE v2, arXiv:2109.10086). A text's weight for vocabulary term j is
`pool_i log(1 + relu(logit_ij))` over its tokens i (max pooling in v2, sum in v1); queries
and documents meet by a dot product, which an inverted index computes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from transformers import AutoModelForMaskedLM, PreTrainedModel

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.core.device import cpu_has_native_bf16
from xpretrieval.models.base import SparseBiEncoder, TermWeighted
from xpretrieval.models.packing import last_hidden_state
from xpretrieval.models.sentence_transformers_layout import write_splade_layout
from xpretrieval.models.splade_pooling import pooled_term_weights
from xpretrieval.models.transformer import TransformerBiEncoder, TransformerConfig

logger = logging.getLogger(__name__)


class SparsePooling(Enum):
    """Lower-case names, because configs select members by name (`model.pooling=sum`)."""

    max = "max"  # SPLADE v2 / SPLADE++
    sum = "sum"  # SPLADE v1


class MaskedLMEncoder(TransformerBiEncoder, TermWeighted):
    """A bi-encoder whose term weights come from a masked-LM head over the vocabulary."""

    auto_class = AutoModelForMaskedLM

    @classmethod
    def from_pretrained(
        cls, path: str | Path, hf_config: Any, config: TransformerConfig
    ) -> PreTrainedModel:
        """Load the masked LM; a checkpoint without an MLM head (a sentence encoder) gets a new
        head with a lexical start (see `init_lexical_head`), and the log says so."""
        model, info = cls.auto_class.from_pretrained(
            path, config=hf_config, output_loading_info=True
        )
        head = [key for key in info["missing_keys"] if key.split(".")[0] in HEAD_PREFIXES]
        if head:
            bias = config.new_head_bias if isinstance(config, MaskedLMConfig) else 0.0
            init_lexical_head(model, bias)
            logger.warning(
                "%s has no masked-LM head: %d head tensors are newly initialised (identity "
                "transform, decoder tied to the input embeddings, bias %g); train before "
                "trusting its weights",
                path,
                len(head),
                bias,
            )
        return model

    def pooled_positions(self, attention_mask: Tensor, special_tokens_mask: Tensor) -> Tensor:
        """The positions term weights are pooled over (1 = pooled): every attended one, as the
        reference computes, or without special tokens when `exclude_special_tokens`."""
        if self.config.exclude_special_tokens:
            return attention_mask * (1 - special_tokens_mask)
        return attention_mask


class SpladeEncoder(MaskedLMEncoder, SparseBiEncoder):
    """Encodes texts into `[n, vocab]` non-negative term weights (dense tensors in training;
    pruned to `*_max_active_dims` when encoding in eval mode)."""

    # positions whose vocabulary logits are computed at once (see splade_pooling.py); None:
    # the plain computation over all positions. The values and gradients are the same.
    pooling_chunk: ClassVar[int | None] = 32
    # fp32 max pooling on a CPU with native bf16: find the terms that can get a weight with a
    # bf16 vocabulary product, then compute only those exactly (same values, see
    # splade_pooling.py); GPUs may reduce bf16 products in bf16, which the bound does not cover
    bf16_screening: ClassVar[bool] = True

    def run_encoder(self, encoder: PreTrainedModel, batch: Any) -> Any:
        """With a BERT-style head, the head's transformed states and its decoder, pooled by
        chunks in `represent` (no [batch, length, vocabulary] logits); otherwise the logits."""
        head = _bert_head(encoder) if self.pooling_chunk is not None else None
        if head is None:
            return super().run_encoder(encoder, batch)
        hidden = last_hidden_state(self.running(encoder.base_model), batch)
        return HeadInputs(head.transform(hidden), head.decoder)

    def represent(
        self, output: Any, attention_mask: Tensor, special_tokens_mask: Tensor, is_query: bool
    ) -> Tensor:
        positions = self.pooled_positions(attention_mask, special_tokens_mask)
        pooling = self.config.pooling
        if isinstance(output, HeadInputs):
            decoder = output.decoder
            weights = pooled_term_weights(
                output.states,
                positions,
                decoder.weight,
                decoder.bias,
                pooling is SparsePooling.max,
                self.pooling_chunk,
                screen=self.bf16_screening and _screens_fast(output.states.device),
            )
        else:
            weights = splade_weights(output.logits, positions, pooling)
        max_active = None if self.training else self._max_active_dims(is_query)
        return weights if max_active is None else keep_top_k(weights, max_active)

    def _max_active_dims(self, is_query: bool) -> int | None:
        config = self.config
        return config.query_max_active_dims if is_query else config.doc_max_active_dims

    def score(self, queries: Tensor, documents: Tensor) -> Tensor:
        """All-pairs dot products of term weights, `[n_queries, n_documents]`."""
        return queries @ documents.T

    def save_layout(self, path: Path) -> None:
        """sentence-transformers' MLMTransformer and SpladePooling files, so that the saved
        folder loads in `SparseEncoder`; not written when special tokens are left out of
        pooling, which SpladePooling cannot do (its weights would differ)."""
        config = self.config
        if config.exclude_special_tokens:
            logger.info("%s: no sentence-transformers files (exclude_special_tokens)", path)
            return
        vocabulary = self.query_encoder.get_output_embeddings().out_features
        lengths, prompts = self.layout_lengths(), self.prompts()
        write_splade_layout(path, vocabulary, config.pooling.value, lengths, prompts)


@dataclass
class MaskedLMConfig(TransformerConfig):
    """Fields of the models whose term weights come from a masked-LM head."""

    initialisation_fields: ClassVar[tuple[str, ...]] = ("new_head_bias",)

    pooling: SparsePooling = SparsePooling.max
    # false: pool over every attended position, [CLS] and [SEP] included, as naver/splade and
    # sentence-transformers' SpladePooling do (published checkpoints expect it); true: leave
    # the special tokens out
    exclude_special_tokens: bool = False
    # bias of the vocabulary logits when the checkpoint has no MLM head and one is created:
    # negative values make the new head sparse from the start (-5: ~800 active terms per
    # 230-token document with all-MiniLM-L6-v2; 0: every term is active)
    new_head_bias: float = -5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.pooling = SparsePooling(self.pooling)  # built in Python, "max" means SparsePooling.max


@register("model", "splade")
@dataclass
class Splade(MaskedLMConfig):
    """Sparse bi-encoder over any masked-LM checkpoint; vocabulary-sized representations."""

    model_class: ClassVar[type[SpladeEncoder]] = SpladeEncoder
    architecture_fields: ClassVar[tuple[str, ...]] = ("pooling", "exclude_special_tokens", "shared")
    layout_kind: ClassVar[str | None] = "splade"

    # at encode time (not in training), keep only the k largest weights of each text
    query_max_active_dims: int | None = None
    doc_max_active_dims: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("query_max_active_dims", "doc_max_active_dims"):
            check_range(name, getattr(self, name), at_least=1, optional=True)


@dataclass(frozen=True)
class HeadInputs:
    """What the chunked pooling needs instead of logits: the MLM head's transformed states
    `[B, L, H]` and its decoder (vocabulary projection)."""

    states: Tensor
    decoder: torch.nn.Linear


def _screens_fast(device: torch.device) -> bool:
    """Whether bf16 screening pays off (and its error bound holds) on `device`."""
    return device.type == "cpu" and cpu_has_native_bf16()


def _bert_head(encoder: PreTrainedModel) -> Any:
    """The BERT-style prediction head (`transform`, then `decoder`) of a masked LM, or None
    for other heads, which the plain computation serves."""
    head = getattr(getattr(encoder, "cls", None), "predictions", None)
    if head is None or not hasattr(head, "transform") or not hasattr(head, "decoder"):
        return None
    return head


HEAD_PREFIXES = ("cls", "lm_head", "vocab_transform", "vocab_projector", "vocab_layer_norm")


def init_lexical_head(model: PreTrainedModel, bias: float) -> None:
    """Make a new MLM head predict each position's own token: square transform layers become
    the identity and the decoder is tied to the input embeddings, so a logit is the match of
    a contextual state with a term's embedding (a lexical start instead of a random one);
    `bias` shifts every logit, so that only the best-matching terms start active."""
    output, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    with torch.no_grad():
        for name, module in model.named_modules():
            square = (
                isinstance(module, torch.nn.Linear) and module.in_features == module.out_features
            )
            if square and name.split(".")[0] in HEAD_PREFIXES:
                module.weight.copy_(torch.eye(module.in_features))
                if module.bias is not None:
                    module.bias.zero_()
        if output.weight is not embeddings.weight:
            output.weight = embeddings.weight
        if output.bias is not None:
            output.bias.fill_(bias)


def splade_weights(logits: Tensor, token_mask: Tensor, pooling: SparsePooling) -> Tensor:
    """`pool_i log(1 + relu(logits[:, i]))` over the tokens kept by `token_mask` ([batch, tokens],
    1 = keep; padding is 0): the plain computation, from the full logits."""
    weights = torch.log1p(torch.relu(logits)) * token_mask.unsqueeze(-1).to(logits.dtype)
    return weights.amax(dim=1) if pooling is SparsePooling.max else weights.sum(dim=1)


def keep_top_k(reps: Tensor, k: int) -> Tensor:
    """Zero all but the k largest entries of each row."""
    if k >= reps.shape[-1]:
        return reps
    values, ids = reps.topk(k, dim=-1)
    return torch.zeros_like(reps).scatter(-1, ids, values)
