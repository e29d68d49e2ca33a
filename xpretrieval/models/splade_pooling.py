"""SPLADE's term weights `pool_i log(1 + relu(W h_i + b)) * mask_i` without the
[batch, length, vocabulary] logits tensor (31 MB per 256-token text in fp32, several copies
kept for backward), computed over chunks of positions.

Max pooling: log1p∘relu is non-decreasing and the bias is the same at every position, so the
pooled weight is log1p(relu(max_i (W h_i) + b)), and the gradient reaches only the winning
position of each (text, term): a custom autograd function keeps the winners' positions and
back-propagates through those alone; only kept positions enter the product (padding, 40% of
a batch of variable-length passages, costs nothing). Sum pooling has no winner: each chunk is
recomputed in the backward pass (activation checkpointing).

Screening (fp32 max pooling on hardware with fast bf16 products): the vocabulary product runs
in bf16 to find, per (text, term), an upper bound on the max logit; only the terms whose bound
is positive (those that can get a weight) are computed again, exactly, in fp32. The others'
weights are exactly 0 in fp32 too. Values and gradients equal the plain computation
(tests/test_splade_pooling.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

GRADIENT_ENTRIES = 2**16  # (text, term) pairs back-propagated at once: bounds backward memory
# |bf16 logit - fp32 logit| <= SCREEN_MARGIN * |w| * |h|: inputs and output rounded to bf16
# (unit roundoff 2^-8 each, 3 x 2^-8 = 0.0117 in all) with fp32 accumulation, plus slack
SCREEN_MARGIN = 2**-6


def _max_logits(
    states: Tensor, mask: Tensor, weight: Tensor, chunk: int, with_positions: bool
) -> tuple[Tensor, Tensor | None]:
    """Per (text, term), the largest logit `w h_i` (without bias) over the positions kept by
    `mask`, as fp32 [B, V] (-inf where none is kept), and its position if `with_positions`.
    Only kept positions are multiplied: they are packed text after text and taken `chunk` x B
    rows at a time (the product of `chunk` positions of every text), so padding costs nothing."""
    batch = states.shape[0]
    best = torch.full((batch, weight.shape[0]), float("-inf"), device=states.device)
    winner = (
        torch.zeros(best.shape, dtype=torch.long, device=states.device) if with_positions else None
    )
    kept_texts, kept_positions = mask.bool().nonzero(as_tuple=True)  # text by text, in order
    packed = states[kept_texts, kept_positions]
    rows = chunk * batch
    for start in range(0, len(kept_texts), rows):
        # the maximum is exact in the logits' own precision: compare there, convert [V] rows
        logits = F.linear(packed[start : start + rows], weight)
        texts, counts = kept_texts[start : start + rows].unique_consecutive(return_counts=True)
        sizes = counts.tolist()
        segments = zip(
            texts.tolist(),
            logits.split(sizes),
            kept_positions[start : start + rows].split(sizes),
            strict=True,
        )
        for text, segment, positions in segments:
            values, at = segment.max(dim=0) if with_positions else (segment.amax(dim=0), None)
            values = values.float()
            better = values > best[text]  # ties keep the earlier position, as the plain max
            best[text] = torch.where(better, values, best[text])
            if winner is not None:
                winner[text] = torch.where(better, positions[at], winner[text])
    return best, winner


def _screened_max_logits(
    states: Tensor, mask: Tensor, weight: Tensor, bias: Tensor, chunk: int, with_positions: bool
) -> tuple[Tensor, Tensor | None]:
    """`_max_logits` of fp32 inputs exactly where the max logit plus bias can be positive,
    found by a bf16 product; elsewhere -inf (its weight, log1p(relu(·)), is 0 either way)."""
    rough, _ = _max_logits(states.bfloat16(), mask, weight.bfloat16(), chunk, False)
    longest = (states.norm(dim=-1) * mask).amax(dim=1)  # the largest kept |h| of each text
    slack = SCREEN_MARGIN * longest[:, None] * weight.norm(dim=1)[None, :]
    candidates = rough + bias.float() + slack > 0
    best = torch.full(rough.shape, float("-inf"), device=states.device)
    winner = torch.zeros(rough.shape, dtype=torch.long, device=states.device)
    for text in range(states.shape[0]):
        terms = candidates[text].nonzero().squeeze(1)
        logits = states[text] @ weight[terms].T  # [L, candidate terms], exact
        logits = logits.masked_fill(~mask[text].bool()[:, None], float("-inf"))
        best[text, terms], winner[text, terms] = logits.max(dim=0)
    return best, winner if with_positions else None


def _pooled_max_logits(
    states: Tensor, mask: Tensor, weight: Tensor, bias: Tensor, chunk: int, screen: bool
) -> tuple[Tensor, Tensor | None]:
    """The max logit with bias of each (text, term) [B, V], and the winning positions when a
    backward pass will need them (the custom backward needs no graph of this search)."""
    with_positions = torch.is_grad_enabled() and any(
        t.requires_grad for t in (states, weight, bias)
    )
    with torch.no_grad():
        if screen:
            best, winner = _screened_max_logits(states, mask, weight, bias, chunk, with_positions)
        else:
            best, winner = _max_logits(states, mask, weight, chunk, with_positions)
        return best + bias.float(), winner


class _MaxPooledTermWeights(torch.autograd.Function):
    """states [B, L, H], weight [V, H], bias [V], best and winner from `_pooled_max_logits`
    -> log1p(relu(best)) [B, V], back-propagated through the winning positions."""

    @staticmethod
    def forward(ctx: Any, states: Tensor, weight: Tensor, bias: Tensor, best: Tensor, winner):
        ctx.save_for_backward(states, weight, best, winner)
        return torch.log1p(torch.relu(best)).to(states.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        states, weight, best, winner = ctx.saved_tensors
        # d log1p(relu(m)) / dm = 1 / (1 + m) where m > 0, else 0
        grad_logit = torch.where(best > 0, grad.float() / (1 + best.clamp(min=0)), 0.0)
        texts, terms = grad_logit.nonzero(as_tuple=True)
        grad_states = torch.zeros_like(states, dtype=torch.float32)
        grad_weight = torch.zeros_like(weight, dtype=torch.float32)
        for start in range(0, len(texts), GRADIENT_ENTRIES):
            b, v = texts[start : start + GRADIENT_ENTRIES], terms[start : start + GRADIENT_ENTRIES]
            positions, g = winner[b, v], grad_logit[b, v, None]
            grad_states.index_put_((b, positions), g * weight[v].float(), accumulate=True)
            grad_weight.index_add_(0, v, g * states[b, positions].float())
        grad_bias = grad_logit.sum(dim=0)
        return (
            grad_states.to(states.dtype),
            grad_weight.to(weight.dtype),
            grad_bias.to(weight.dtype),
            None,
            None,
        )


def _logits(states: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`[B, n, V]` logits of a slice of positions, as one 2-D product: a 3-D product on the
    (non-contiguous) slice runs as a batched product that copies the decoder per text."""
    batch, positions, hidden = states.shape
    return F.linear(states.reshape(batch * positions, hidden), weight, bias).view(
        batch, positions, -1
    )


def _sum_chunk(states: Tensor, mask: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    logits = _logits(states, weight, bias)
    return (torch.log1p(torch.relu(logits)) * mask[..., None].to(logits.dtype)).sum(dim=1)


def pooled_term_weights(
    states: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor,
    max_pooling: bool,
    chunk: int,
    screen: bool = False,
) -> Tensor:
    """SPLADE term weights `[B, V]` from the MLM head's transformed states `[B, L, H]` and its
    decoder (`weight` [V, H], `bias` [V]), pooling the positions kept by `mask` [B, L]
    (max pooling if `max_pooling`, else sum), `chunk` positions at a time; `screen`: find the
    terms that can get a weight with a bf16 product first (fp32 max pooling only)."""
    if max_pooling:
        full_precision = states.dtype == weight.dtype == torch.float32
        screen = screen and full_precision and not torch.is_autocast_enabled(states.device.type)
        best, winner = _pooled_max_logits(states, mask, weight, bias, chunk, screen)
        return _MaxPooledTermWeights.apply(states, weight, bias, best, winner)
    graph = torch.is_grad_enabled() and (states.requires_grad or weight.requires_grad)
    total = torch.zeros(states.shape[0], weight.shape[0], device=states.device)
    for start in range(0, states.shape[1], chunk):
        part = (states[:, start : start + chunk], mask[:, start : start + chunk], weight, bias)
        pooled = checkpoint(_sum_chunk, *part, use_reentrant=False) if graph else _sum_chunk(*part)
        total = total + pooled
    return total
