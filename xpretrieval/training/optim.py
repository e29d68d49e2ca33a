"""Optimiser configs: the optimiser and its learning-rate schedule."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_linear_schedule_with_warmup

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register


@dataclass
class OptimizerConfig(ABC):
    """Builds an optimiser and its schedule for a model and a number of steps."""

    lr: float = 2e-5

    def __post_init__(self) -> None:
        check_range("lr", self.lr, above=0)

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
    # layer-wise learning-rate decay (ELECTRA, BEiT): the transformer's layer l of L learns at
    # lr * layer_decay ** (L - l), its embeddings at lr * layer_decay ** (L + 1), heads at lr;
    # null: one rate for all
    layer_decay: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("weight_decay", self.weight_decay, at_least=0)
        check_range("warmup_ratio", self.warmup_ratio, at_least=0, at_most=1)
        check_range("warmup_steps", self.warmup_steps, at_least=0, optional=True)
        check_range("layer_decay", self.layer_decay, above=0, at_most=1, optional=True)

    def build(self, model: nn.Module, total_steps: int) -> tuple[torch.optim.Optimizer, LambdaLR]:
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        depths = layer_depths([name for name, _ in named])
        top = max(depths.values(), default=0)
        groups: dict[tuple[int, bool], list[nn.Parameter]] = {}
        for name, parameter in named:
            no_decay = parameter.ndim < 2 or "norm" in name.lower()
            groups.setdefault((depths[name], no_decay), []).append(parameter)
        rate = self.layer_decay or 1.0
        optimizer = torch.optim.AdamW(
            [
                {
                    "params": params,
                    "weight_decay": 0.0 if no_decay else self.weight_decay,
                    "lr": self.lr * rate ** (top - depth),
                }
                for (depth, no_decay), params in sorted(groups.items())
            ],
            lr=self.lr,
            eps=self.eps,
        )
        warmup = self.warmup_steps
        if warmup is None:
            warmup = round(self.warmup_ratio * total_steps)
        return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, total_steps)


LAYER = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")
EMBEDDINGS = ("embeddings", "embed_tokens", "wte", "wpe", "word_embedding")


def layer_depths(names: list[str]) -> dict[str, int]:
    """Each parameter's depth in its transformer: 0 for embeddings, l + 1 for layer l, and
    L + 1 (the top: learning at the full rate) for what follows the L layers (pooler, heads,
    projections). Parameter names of any Hugging Face encoder (`encoder.layer.3.`,
    `layers.3.`, `h.3.`) are understood."""
    layers = [int(m.group(1)) for name in names if (m := LAYER.search(f".{name}"))]
    top = max(layers, default=-1) + 2
    depths = {}
    for name in names:
        match = LAYER.search(f".{name}")
        if match:
            depths[name] = int(match.group(1)) + 1
        elif any(part in name for part in EMBEDDINGS):
            depths[name] = 0
        else:
            depths[name] = top
    return depths
