"""Dropout for training on a CPU, drawn as uniform noise below the rate and kept as booleans:
the same Bernoulli dropout as `nn.Dropout`, but PyTorch's CPU path draws with `bernoulli_` and
multiplies the gradient by a float copy of the mask, which together cost about twice as much
(1 in 8 of a dense training step). Swapped in at load by `use_fast_dropout`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


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
    """x, zeroed where uniform noise falls below p, scaled by 1 / (1 - p)."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, p: float) -> Tensor:  # noqa: A002
        dropped = torch.empty_like(input).uniform_() < p
        ctx.save_for_backward(dropped)
        ctx.scale = 1 / (1 - p)
        return input.masked_fill(dropped, 0).mul_(ctx.scale)

    @staticmethod
    def backward(ctx: Any, grad: Tensor):  # noqa: ANN205
        (dropped,) = ctx.saved_tensors
        return grad.masked_fill(dropped, 0).mul_(ctx.scale), None
