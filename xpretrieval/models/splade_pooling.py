"""SPLADE's term weights `pool_i log(1 + relu(W h_i + b)) * mask_i` without the
[batch, length, vocabulary] logits tensor (31 MB per 256-token text in fp32, several copies
kept for backward), computed over chunks of positions.

Max pooling: log1p∘relu is non-decreasing, so the pooled weight is log1p(relu(max_i logit)),
and the gradient reaches only the winning position of each (text, term): a custom autograd
function keeps the winners' positions and back-propagates through those alone. Sum pooling
has no winner: each chunk is recomputed in the backward pass (activation checkpointing).
Values and gradients equal the plain computation (tests/test_splade_pooling.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

GRADIENT_ENTRIES = 2**16  # (text, term) pairs back-propagated at once: bounds backward memory


class _MaxPooledTermWeights(torch.autograd.Function):
    """states [B, L, H], mask [B, L], weight [V, H], bias [V] -> log1p(relu(max logit)) [B, V]."""

    @staticmethod
    def forward(ctx: Any, states: Tensor, mask: Tensor, weight: Tensor, bias: Tensor, chunk: int):
        batch, length, _ = states.shape
        # the winning positions are kept only for a backward pass (not when encoding)
        keep_winner = any(ctx.needs_input_grad[:4])
        best = states.new_full((batch, weight.shape[0]), float("-inf"), dtype=torch.float32)
        winner = torch.zeros(best.shape, dtype=torch.long, device=states.device)
        for start in range(0, length, chunk):
            # the maximum is exact in the logits' own precision: compare there, convert [B, V]
            logits = _logits(states[:, start : start + chunk], weight, bias)
            kept = mask[:, start : start + chunk].bool()
            if not kept.all():
                logits = logits.masked_fill(~kept[..., None], float("-inf"))
            if keep_winner:
                values, positions = logits.max(dim=1)
            else:
                values, positions = logits.amax(dim=1), None
            values = values.float()
            better = values > best
            best = torch.where(better, values, best)
            if positions is not None:
                winner = torch.where(better, positions + start, winner)
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
            None,
            grad_weight.to(weight.dtype),
            grad_bias.to(weight.dtype),
            None,
        )


def _logits(states: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
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
    states: Tensor, mask: Tensor, weight: Tensor, bias: Tensor, max_pooling: bool, chunk: int
) -> Tensor:
    """SPLADE term weights `[B, V]` from the MLM head's transformed states `[B, L, H]` and its
    decoder (`weight` [V, H], `bias` [V]), pooling the positions kept by `mask` [B, L]
    (max pooling if `max_pooling`, else sum), `chunk` positions at a time."""
    if max_pooling:
        return _MaxPooledTermWeights.apply(states, mask, weight, bias, chunk)
    graph = torch.is_grad_enabled() and (states.requires_grad or weight.requires_grad)
    total = torch.zeros(states.shape[0], weight.shape[0], device=states.device)
    for start in range(0, states.shape[1], chunk):
        part = (states[:, start : start + chunk], mask[:, start : start + chunk], weight, bias)
        pooled = checkpoint(_sum_chunk, *part, use_reentrant=False) if graph else _sum_chunk(*part)
        total = total + pooled
    return total
