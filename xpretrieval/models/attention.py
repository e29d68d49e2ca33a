"""Attention for training on a CPU with attention dropout, where PyTorch's SDPA falls back to
its plain path and keeps three [batch, heads, length, length] tensors per layer for backward
(softmax output, dropout mask, dropped probabilities: 9 bytes a score in fp32).

This attention keeps the dropout mask alone (1 byte a score) with queries, keys, values and
output, and recomputes the softmax in backward; both passes run a few texts at a time, so each
chunk's scores stay in cache. Same function, same dropout (Bernoulli draws from torch's
generator, models/dropout.py); elsewhere (no dropout, GPUs, whose SDPA kernels fuse dropout) it
is SDPA itself.
Registered with transformers' attention interface and switched on by `save_attention_memory`;
a packed batch (models/packing.py) passes its layout as a keyword, and is laid out by text here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from xpretrieval.models.dropout import bernoulli_mask, zero_dropped

NAME = "xpretrieval_sdpa"
PACKING_KWARG = "xpretrieval_packing"  # a packed batch's layout (models/packing.py)
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

    layout = kwargs.pop(PACKING_KWARG, None)
    if layout is not None:  # one packed row of texts: attend within each text
        query, key, value = (layout.by_text(t) for t in (query, key, value))
        attention_mask = layout.attention_mask()
        output, _ = attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs
        )
        return layout.pack(output), None
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


def _probabilities(
    query: Tensor, key: Tensor, mask: Tensor | None, scale: float, heads: int
) -> Tensor:
    """softmax(q k^T scale + mask) of one chunk, q [texts x heads, L, d]. In fp32 (and wider)
    the product is scaled after it is taken, as the pinned baselines were trained; in bf16 it
    is scaled inside the product and the scores stay bf16, as flash attention keeps its
    probabilities (softmax sums in fp32 either way): half the bytes of every pass over them."""
    if query.dtype.itemsize < 4:
        unused = query.new_zeros(())  # beta=0: only the scaled product
        scores = torch.baddbmm(unused, query, key.transpose(1, 2), beta=0, alpha=scale)
    else:
        scores = torch.bmm(query, key.transpose(1, 2)).mul_(scale)
    if mask is not None:  # [texts or 1, heads or 1, L or 1, L'] broadcast over each text's
        by_text = scores.view(-1, heads, *scores.shape[1:])
        if mask.dtype != torch.bool:
            by_text.add_(mask)
        elif not mask.all():  # texts without padding (most truncated documents) need no pass
            by_text.masked_fill_(~mask, float("-inf"))
    return scores.softmax(dim=-1)


def _chunks(batch: int, heads: int, scores_per_text: int, mask: Tensor | None):  # noqa: ANN202
    """(rows of the [batch x heads, ...] tensors, the mask of their texts) covering the batch,
    SCORES_PER_CHUNK at a time."""
    texts = max(1, SCORES_PER_CHUNK // (heads * scores_per_text))
    for start in range(0, batch, texts):
        rows = slice(start * heads, (start + texts) * heads)
        yield rows, mask if mask is None or mask.shape[0] == 1 else mask[start : start + texts]


def _by_head(tensor: Tensor) -> Tensor:
    """[B, heads, L, d] -> contiguous [B x heads, L, d]: one bulk copy of a transposed view,
    rather than a strided copy inside every product."""
    return tensor.reshape(-1, *tensor.shape[2:]).contiguous()


class _DropoutAttention(torch.autograd.Function):
    """softmax(q k^T scale + mask) with dropout, times v; backward recomputes the softmax."""

    @staticmethod
    def forward(ctx: Any, query, key, value, mask, dropout: float, scale: float):  # noqa: ANN001, ANN205
        batch, heads, length, _ = query.shape
        q, k, v = (_by_head(t) for t in (query, key, value))
        with torch.autocast(query.device.type, enabled=False):
            output = torch.empty_like(q)
            dropped = q.new_empty(*q.shape[:2], k.shape[1], dtype=torch.bool)
            for rows, chunk_mask in _chunks(batch, heads, length * k.shape[1], mask):
                probabilities = _probabilities(q[rows], k[rows], chunk_mask, scale, heads)
                chunk_dropped = bernoulli_mask(probabilities.shape, dropout, out=dropped[rows])
                kept = zero_dropped(probabilities, chunk_dropped)
                torch.bmm(kept, v[rows], out=output[rows])
            output.mul_(1 / (1 - dropout))
        ctx.save_for_backward(q, k, v, mask, dropped, output)
        ctx.dropout, ctx.scale, ctx.batch = dropout, scale, batch
        return output.view(query.shape)

    @staticmethod
    def backward(ctx: Any, grad: Tensor):  # noqa: ANN205
        q, k, v, mask, dropped, output = ctx.saved_tensors
        batch, heads = ctx.batch, q.shape[0] // ctx.batch
        grad = _by_head(grad)
        with torch.autocast(q.device.type, enabled=False):
            # d softmax: the row sums of dP * P equal grad . output (no [L, L] pass needed)
            wide = torch.promote_types(grad.dtype, torch.float32)
            row_sums = (grad.to(wide) * output.to(wide)).sum(dim=-1, keepdim=True).to(q.dtype)
            grad = grad * (1 / (1 - ctx.dropout))
            grad_q, grad_k, grad_v = (torch.empty_like(t) for t in (q, k, v))
            for rows, chunk_mask in _chunks(batch, heads, q.shape[1] * k.shape[1], mask):
                probabilities = _probabilities(q[rows], k[rows], chunk_mask, ctx.scale, heads)
                kept = zero_dropped(probabilities, dropped[rows])
                torch.bmm(kept.transpose(1, 2), grad[rows], out=grad_v[rows])
                # d scores = (dP - row sums) * P, where dP * P = (grad v^T) * kept
                scores = torch.bmm(grad[rows], v[rows].transpose(1, 2)).mul_(kept)
                scores.addcmul_(probabilities, row_sums[rows], value=-1)
                torch.bmm(scores, k[rows], out=grad_q[rows])
                torch.bmm(scores.transpose(1, 2), q[rows], out=grad_k[rows])
        grad_q.mul_(ctx.scale)
        grad_k.mul_(ctx.scale)
        shape = (batch, heads, *q.shape[1:])
        return (
            grad_q.view(shape),
            grad_k.view(batch, heads, *k.shape[1:]),
            grad_v.view(batch, heads, *v.shape[1:]),
            None,
            None,
            None,
        )


REGISTERED = _register()
