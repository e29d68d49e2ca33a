"""Padding-free encoding: a padded batch's real tokens run through the transformer as one
packed row, so that its linear layers (nine tenths of a BERT's FLOPs) skip the padding; the
attention (models/attention.py) lays each text out again to attend within it, and the last
hidden states come back padded, as the poolings read them. Same values as the padded pass.

The products saved are the padded share of the batch's tokens (7% on SciFact's training
batches: dense training 1.05x faster); laying the texts out for attention costs copies.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from xpretrieval.models.attention import NAME, PACKING_KWARG

# Hugging Face model types whose embeddings take position ids as given and whose layers hand
# keyword arguments down to the attention interface (tested: the packed pass equals the padded)
PACKABLE_TYPES = frozenset({"bert", "distilbert", "roberta", "xlm-roberta"})
# those whose first position id is the padding token's id + 1 (fairseq's numbering), not 0
POSITIONS_AFTER_PADDING = frozenset({"roberta", "xlm-roberta"})


class PackedLayout:
    """Where each text's tokens are in the packed row: `kept` [texts, length] marks the real
    positions of the padded batch, in the order of the packed row."""

    def __init__(self, kept: Tensor) -> None:
        self.kept = kept
        # the padded batch's flat positions of the packed tokens: a gather and a copy move rows
        # (a boolean index would look its positions up again at every call, forward and back)
        self.positions = kept.flatten().nonzero().squeeze(1)

    def pad(self, packed: Tensor) -> Tensor:
        """[1, tokens, ...] -> [texts, length, ...], zeros at padding."""
        rows = packed.new_zeros(self.kept.numel(), *packed.shape[2:])
        return rows.index_copy(0, self.positions, packed[0]).view(
            *self.kept.shape, *packed.shape[2:]
        )

    def pack(self, padded: Tensor) -> Tensor:
        """[texts, length, ...] -> [1, tokens, ...]: the real positions only."""
        rows = padded.reshape(self.kept.numel(), *padded.shape[2:])
        return rows.index_select(0, self.positions).unsqueeze(0)

    def by_text(self, packed: Tensor) -> Tensor:
        """An attention input [1, heads, tokens, d] -> [texts, heads, length, d]."""
        return self.pad(packed.transpose(1, 2)).transpose(1, 2)

    def attention_mask(self) -> Tensor:
        """[texts, 1, 1, length]: True at the keys each text attends to."""
        return self.kept[:, None, None, :]


def packable(encoder: Any, batch: dict[str, Tensor]) -> bool:
    """Whether a packed pass of `batch` through the Hugging Face `encoder` gives what the
    padded one does, and saves work: a supported model type using models/attention.py, and
    some padding to skip."""
    config = getattr(encoder, "config", None)
    return (
        getattr(config, "model_type", None) in PACKABLE_TYPES
        and getattr(config, "_attn_implementation", None) == NAME
        and not getattr(config, "is_decoder", False)
        and "attention_mask" in batch
        and not bool(batch["attention_mask"].all())
    )


def run_packed(encoder: Any, batch: dict[str, Tensor]) -> Tensor:
    """The padded last hidden states [texts, length, hidden] of `batch`, computed on its real
    tokens only (see the module's doc)."""
    kept = batch["attention_mask"].bool()
    layout = PackedLayout(kept)
    config = encoder.config
    first = config.pad_token_id + 1 if config.model_type in POSITIONS_AFTER_PADDING else 0
    # each real token's position counts from `first`, whichever side its text is padded on
    positions = kept.cumsum(dim=1) - 1 + first
    packed_ids = layout.pack(batch["input_ids"])
    inputs = {
        "input_ids": packed_ids,
        "position_ids": layout.pack(positions),
        # all real tokens: transformers skips its mask, which the layout replaces; without it,
        # it reads packed texts from the position ids and builds a [tokens, tokens] mask
        # (SciFact, 32 texts: 8,155^2 booleans, 8% of a bf16 encoding pass)
        "attention_mask": torch.ones_like(packed_ids),
    }
    if "token_type_ids" in batch:
        inputs["token_type_ids"] = layout.pack(batch["token_type_ids"])
    output = encoder(**inputs, **{PACKING_KWARG: layout})
    return layout.pad(output.last_hidden_state)


def last_hidden_state(encoder: Any, batch: dict[str, Tensor]) -> Tensor:
    """`encoder(**batch).last_hidden_state` of a Hugging Face base model: from the batch's real
    tokens alone where `packable`."""
    if packable(encoder, batch):
        return run_packed(encoder, batch)
    return encoder(**batch).last_hidden_state
