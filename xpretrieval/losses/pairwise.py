"""Pairwise losses: each query's positive against each of its own negatives.

Hinge (margin ranking; Herbrich et al. 2000), logistic (RankNet; Burges et al., ICML 2005)
and binary cross-entropy on every scored (query, document) pair, as xpmir's pairwise and
`CrossEntropyLoss` families. Pairs come from the documents a query brought to the batch
(`owners`): other queries' documents are not its negatives here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from xpretrieval.config import register
from xpretrieval.losses.base import BatchScores, Loss


def own_pairs(batch: BatchScores) -> tuple[Tensor, Tensor]:
    """(positive score, negative score) of every (query, own negative) pair, each `[pairs]`."""
    positive_column = torch.zeros(
        batch.scores.shape[1], dtype=torch.bool, device=batch.scores.device
    )
    positive_column[batch.targets] = True
    negatives = (~positive_column).nonzero().squeeze(1)
    queries = batch.owners[negatives]
    if len(negatives) == 0:
        raise ValueError("a pairwise loss needs negatives: the batch's records have none")
    return batch.scores[queries, batch.targets[queries]], batch.scores[queries, negatives]


class _PairwiseLoss(Loss):
    """Base of the losses on (query, own negative) pairs."""

    def needs_own_negatives(self) -> bool:
        return True


@register("loss", "hinge")
@dataclass
class Hinge(_PairwiseLoss):
    """mean(max(0, margin - positive + negative)) over (query, own negative) pairs."""

    margin: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")

    def __call__(self, batch: BatchScores) -> Tensor:
        positive, negative = own_pairs(batch)
        return torch.relu(self.margin - positive + negative).mean()


@register("loss", "logistic")
@dataclass
class Logistic(_PairwiseLoss):
    """RankNet: mean(log(1 + exp(negative - positive))) over (query, own negative) pairs."""

    def __call__(self, batch: BatchScores) -> Tensor:
        positive, negative = own_pairs(batch)
        return F.softplus(negative - positive).mean()


@register("loss", "cross_entropy")
@dataclass
class PairCrossEntropy(_PairwiseLoss):
    """Binary cross-entropy of every scored pair: each query's positive is relevant (1), its
    own negatives are not (0); the scores are logits."""

    def __call__(self, batch: BatchScores) -> Tensor:
        _, negative = own_pairs(batch)
        positive = batch.scores[torch.arange(len(batch.targets)), batch.targets]
        logits = torch.cat([positive, negative])
        labels = torch.cat([torch.ones_like(positive), torch.zeros_like(negative)])
        return F.binary_cross_entropy_with_logits(logits, labels)
