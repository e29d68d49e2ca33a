"""Dropout for training on a CPU, drawn 16 random bits at a time and kept as booleans: the same
Bernoulli dropout as `nn.Dropout`, but PyTorch's CPU path draws a float per element with
`bernoulli_` (7 to 12 ns each on a 2-core CPU, the largest element-wise cost of a SPLADE
training step after the products) and multiplies the gradient by a float copy of the mask.
Swapped in at load by `use_fast_dropout`; the attention of models/attention.py draws its
dropout with `bernoulli_mask` too."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

LEVELS = 2**16  # one draw is an int16: four draws from each 64-bit number of torch's generator
RATE_TOLERANCE = 1e-3  # largest relative change of the rate that 16-bit draws may make


def zero_dropped(values: Tensor, dropped: Tensor) -> Tensor:
    """`values` with zeros where `dropped` is True, as a new tensor: values - values x dropped,
    the booleans read as bytes, since PyTorch's boolean masking (`where`, `masked_fill`) runs
    2-4x slower on a CPU. Exact for finite values."""
    return torch.addcmul(values, values, dropped.view(torch.uint8).to(values.dtype), value=-1)


def bernoulli_mask(shape: torch.Size, rate: float, out: Tensor | None = None) -> Tensor:
    """Booleans of `shape`, each True with probability `rate`, from torch's generator (so
    `torch.manual_seed` repeats them). Four draws per 64-bit random number, the rate rounded
    to a multiple of 2^-16 (0.1 -> 0.1000061); a rate that rounding would move by more than
    RATE_TOLERANCE (one below 0.0076 and not a multiple of 2^-16) is drawn as uniform floats.
    On the CPU."""
    level = rate * LEVELS
    if abs(round(level) - level) > RATE_TOLERANCE * level:
        return torch.lt(torch.empty(shape).uniform_(), rate, out=out)
    count = math.prod(shape)
    words = torch.empty(-(-count // 4), dtype=torch.int64)
    words.random_(-(2**63), None)  # all 64 bits random
    draws = words.view(torch.int16)[:count].view(shape)  # uniform over [-2^15, 2^15)
    return torch.lt(draws, round(level) - LEVELS // 2, out=out)


class FastDropout(nn.Dropout):
    """`nn.Dropout` with the CPU training path of this module; elsewhere `nn.Dropout` itself."""

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 (nn.Dropout's name)
        if not self.training or self.inplace or not 0 < self.p < 1 or input.device.type != "cpu":
            return super().forward(input)
        return _Dropout.apply(input, self.p)


def use_fast_dropout(model: nn.Module) -> None:
    """Make every plain `nn.Dropout` of `model` a `FastDropout` of the same rate, in place."""
    for module in model.modules():
        if type(module) is nn.Dropout:
            module.__class__ = FastDropout


class _Dropout(torch.autograd.Function):
    """x, zeroed where `bernoulli_mask` draws True with probability p, scaled by 1 / (1 - p)."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, p: float) -> Tensor:  # noqa: A002
        dropped = bernoulli_mask(input.shape, p)
        ctx.save_for_backward(dropped)
        ctx.scale = 1 / (1 - p)
        return zero_dropped(input, dropped).mul_(ctx.scale)

    @staticmethod
    def backward(ctx: Any, grad: Tensor):  # noqa: ANN205
        (dropped,) = ctx.saved_tensors
        return zero_dropped(grad, dropped).mul_(ctx.scale), None
