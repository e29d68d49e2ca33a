"""Pairwise losses: each query's positive against each of its own negatives.

Hinge (margin ranking; Herbrich et al. 2000), logistic (RankNet; Burges et al., ICML 2005),
binary cross-entropy on every scored (query, document) pair, as xpmir's pairwise and
`CrossEntropyLoss` families, and the distance-based triplet loss (Schroff et al., CVPR 2015;
sentence-transformers' `TripletLoss`). Pairs come from the documents a query brought to the
batch (`owners`): other queries' documents are not its negatives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.losses.base import BatchScores, Loss
from xpretrieval.models.base import DenseBiEncoder


def own_pair_indices(batch: BatchScores) -> tuple[Tensor, Tensor, Tensor]:
    """(query row, positive column, negative column) of every (query, own negative) pair."""
    positive_column = torch.zeros(
        batch.scores.shape[1], dtype=torch.bool, device=batch.scores.device
    )
    positive_column[batch.targets] = True
    negatives = (~positive_column).nonzero().squeeze(1)
    queries = batch.owners[negatives]
    if len(negatives) == 0:
        raise ValueError("a pairwise loss needs negatives: the batch's records have none")
    return queries, batch.targets[queries], negatives


def own_pairs(batch: BatchScores) -> tuple[Tensor, Tensor]:
    """(positive score, negative score) of every (query, own negative) pair, each `[pairs]`."""
    queries, positives, negatives = own_pair_indices(batch)
    return batch.scores[queries, positives], batch.scores[queries, negatives]


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
        check_range("margin", self.margin, at_least=0)

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


@register("loss", "triplet")
@dataclass
class Triplet(_PairwiseLoss):
    """mean(max(0, d(query, positive) - d(query, negative) + margin)) over (query, own
    negative) pairs, with d the euclidean or the cosine distance of dense vectors: it shapes
    distances rather than scores. The margin suits unit vectors (distances 0-2); for
    unnormalised ones, sentence-transformers uses 5."""

    model_kind: ClassVar[type] = DenseBiEncoder

    margin: float = 0.5
    distance: str = "euclidean"  # or cosine: 1 - cosine similarity

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("margin", self.margin, at_least=0)
        if self.distance not in ("euclidean", "cosine"):
            raise ValueError(f"distance must be euclidean or cosine, got {self.distance!r}")

    def __call__(self, batch: BatchScores) -> Tensor:
        if batch.queries is None or batch.documents is None or batch.queries.dim() != 2:
            raise ValueError("the triplet loss needs dense [n, dim] representations")
        queries, positives, negatives = own_pair_indices(batch)
        anchor = batch.queries[queries]
        positive = self._distance(anchor, batch.documents[positives])
        negative = self._distance(anchor, batch.documents[negatives])
        return torch.relu(positive - negative + self.margin).mean()

    def _distance(self, a: Tensor, b: Tensor) -> Tensor:
        if self.distance == "cosine":
            return 1 - F.cosine_similarity(a, b, dim=-1)
        return (a - b).norm(dim=-1)
