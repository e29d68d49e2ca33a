"""Pool token representations into one vector per text, ignoring padding."""

from __future__ import annotations

from enum import Enum

import torch
from torch import Tensor


class Pooling(Enum):
    """Lower-case names, because configs select members by name (`model.pooling=mean`)."""

    cls = "cls"  # the first token's vector
    mean = "mean"  # average over non-padding tokens (sentence-transformers' default)
    max = "max"  # element-wise maximum over non-padding tokens
    last = "last"  # the last non-padding token's vector (decoder-only models, with EOS)


def pool(hidden: Tensor, attention_mask: Tensor, mode: Pooling) -> Tensor:
    """`hidden` [batch, tokens, dim] and `attention_mask` [batch, tokens] -> [batch, dim]."""
    if mode is Pooling.cls:
        return hidden[:, 0]
    if mode is Pooling.last:  # padding on either side: the position of the last 1 of the mask
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask * positions).argmax(dim=1)
        return hidden[torch.arange(len(hidden), device=hidden.device), last]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode is Pooling.mean:
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    if mode is Pooling.max:
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    raise ValueError(f"unknown pooling {mode}")
