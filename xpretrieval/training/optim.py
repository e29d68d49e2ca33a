"""Optimiser configs: the optimiser and its learning-rate schedule."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_linear_schedule_with_warmup

from xpretrieval.config import register


@dataclass
class OptimizerConfig(ABC):
    """Builds an optimiser and its schedule for a model and a number of steps."""

    lr: float = 2e-5

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    @abstractmethod
    def build(self, model: nn.Module, total_steps: int) -> tuple[torch.optim.Optimizer, LambdaLR]:
        """The optimiser over the model's trainable parameters, and its per-step schedule."""


@register("optimizer", "adamw")
@dataclass
class AdamW(OptimizerConfig):
    """AdamW with linear warm-up then linear decay to zero; no decay on biases and norms."""

    weight_decay: float = 0.01
    eps: float = 1e-8
    warmup_steps: int | None = None  # when unset, warmup_ratio of the total steps
    warmup_ratio: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_ratio <= 1:
            raise ValueError(f"warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")

    def build(self, model: nn.Module, total_steps: int) -> tuple[torch.optim.Optimizer, LambdaLR]:
        decay, no_decay = [], []
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                is_norm_or_bias = parameter.ndim < 2 or "norm" in name.lower()
                (no_decay if is_norm_or_bias else decay).append(parameter)
        groups = [
            {"params": decay, "weight_decay": self.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=self.lr, eps=self.eps)
        warmup = self.warmup_steps
        if warmup is None:
            warmup = round(self.warmup_ratio * total_steps)
        return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
