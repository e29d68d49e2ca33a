"""Attention for training on a CPU with attention dropout, where PyTorch's SDPA falls back to
its plain path and keeps three [batch, heads, length, length] tensors per layer for backward
(softmax output, dropout mask, dropped probabilities: 9 bytes a score in fp32).

This attention keeps the dropout mask alone (1 byte a score) with queries, keys, values and
output, and recomputes the softmax in backward; both passes run a few texts at a time, so each
chunk's scores stay in cache. Same function, same dropout (Bernoulli from torch's generator);
elsewhere (no dropout, GPUs, whose SDPA kernels fuse dropout) it is SDPA itself.
Registered with transformers' attention interface and switched on by `save_attention_memory`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

NAME = "xpretrieval_sdpa"
SCORES_PER_CHUNK = 2**21  # attention scores computed at once: 8 MB in fp32, cache-sized


def save_attention_memory(model: Any) -> None:
    """Switch a transformers `model` that uses SDPA through the attention interface to this
    module's attention; other models, and transformers without the interface, are left as is."""
    config = getattr(model, "config", None)
    if not REGISTERED or getattr(config, "_attn_implementation", None) != "sdpa":
        return
    if getattr(model, "_supports_attention_backend", False):
        model.set_attn_implementation(NAME)


def _register() -> bool:
    """Register this attention, and SDPA's masks for it, with transformers: at import, so that
    every process that unpickles a model using it (encoding workers) knows the name."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:  # transformers before the attention interface
        return False
    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return True


def attention_forward(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers' attention signature: query, key, value [B, heads, L, d] -> output
    [B, L, heads, d]; SDPA unless training on a CPU with dropout (see the module's doc),
    with or without gradients, so that a pass replayed with gradients (GradCache) draws the
    dropout of its first pass."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = (
        dropout == 0.0
        or query.device.type != "cpu"
        or key.shape[1] != query.shape[1]  # grouped keys and values
        or (attention_mask is None and (is_causal or getattr(module, "is_causal", False)))
        or any(kwargs.get(name) is not None for name in ("position_bias", "softcap", "s_aux"))
    )
    if plain:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs
        )
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    output = _DropoutAttention.apply(query, key, value, attention_mask, dropout, scale)
    return output.transpose(1, 2).contiguous(), None


def _probabilities(query: Tensor, key: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """softmax(q k^T scale + mask) for one chunk of texts, in fp32 at least."""
    scores = torch.matmul(query, key.transpose(-1, -2))
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32)).mul_(scale)
    if mask is None:
        pass
    elif mask.dtype == torch.bool:
        scores.masked_fill_(~mask, float("-inf"))
    else:
        scores.add_(mask)
    return scores.softmax(dim=-1)


def _chunks(query: Tensor, key: Tensor, mask: Tensor | None):  # noqa: ANN202
    """(text slice, that slice of the mask) covering the batch, SCORES_PER_CHUNK at a time."""
    batch, heads, length = query.shape[:3]
    texts = max(1, SCORES_PER_CHUNK // (heads * length * key.shape[2]))
    for start in range(0, batch, texts):
        rows = slice(start, start + texts)
        yield rows, mask if mask is None or mask.shape[0] == 1 else mask[rows]


class _DropoutAttention(torch.autograd.Function):
    """softmax(q k^T scale + mask) with dropout, times v; backward recomputes the softmax."""

    @staticmethod
    def forward(ctx: Any, query, key, value, mask, dropout: float, scale: float):  # noqa: ANN001, ANN205
        with torch.autocast(query.device.type, enabled=False):
            output = torch.empty_like(query)
            keep = query.new_empty(*query.shape[:3], key.shape[2], dtype=torch.bool)
            for rows, chunk_mask in _chunks(query, key, mask):
                probabilities = _probabilities(query[rows], key[rows], chunk_mask, scale)
                probabilities.mul_(keep[rows].bernoulli_(1 - dropout))
                torch.matmul(probabilities.to(value.dtype), value[rows], out=output[rows])
            output.mul_(1 / (1 - dropout))
        ctx.save_for_backward(query, key, value, mask, keep, output)
        ctx.dropout, ctx.scale = dropout, scale
        return output

    @staticmethod
    def backward(ctx: Any, grad: Tensor):  # noqa: ANN205
        query, key, value, mask, keep, output = ctx.saved_tensors
        with torch.autocast(query.device.type, enabled=False):
            # d softmax: the row sums of dP * P equal grad . output (no [L, L] pass needed)
            wide = torch.promote_types(grad.dtype, torch.float32)
            row_sums = (grad.to(wide) * output.to(wide)).sum(dim=-1, keepdim=True)
            grad = grad * (1 / (1 - ctx.dropout))
            grads = [torch.empty_like(t) for t in (query, key, value)]
            for rows, chunk_mask in _chunks(query, key, mask):
                probabilities = _probabilities(query[rows], key[rows], chunk_mask, ctx.scale)
                kept = (probabilities * keep[rows]).to(value.dtype)
                torch.matmul(kept.transpose(-1, -2), grad[rows], out=grads[2][rows])
                scores = torch.matmul(grad[rows], value[rows].transpose(-1, -2)).to(wide)
                scores.mul_(keep[rows]).sub_(row_sums[rows]).mul_(probabilities)
                scores = scores.to(query.dtype)
                torch.matmul(scores, key[rows], out=grads[0][rows])
                torch.matmul(scores.transpose(-1, -2), query[rows], out=grads[1][rows])
        grads[0].mul_(ctx.scale)
        grads[1].mul_(ctx.scale)
        return *grads, None, None, None


REGISTERED = _register()
