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
    """Base of the losses on (query, own negative) pairs.

    Every subclass reads `targets` `[B]` (each query's positive column) and `owners` `[N]`
    (the query row that brought each column): each column that is no query's positive is a
    negative of its owner, paired with that owner's positive. Records must carry negatives
    of their own (`sampler=pairwise` or `sampler=batchwise`).
    """

    def needs_own_negatives(self) -> bool:
        return True


@register("loss", "hinge")
@dataclass
class Hinge(_PairwiseLoss):
    """mean(max(0, margin - positive + negative)) over (query, own negative) pairs.

    Reference: Herbrich, Graepel and Obermayer, 2000, "Large Margin Rank Boundaries for
    Ordinal Regression" (Advances in Large Margin Classifiers, MIT Press): the pairwise
    margin loss of ranking SVMs, here on the model's scores.

    Inputs: `scores` `[B, N]` (only each query's positive and own negatives are read),
    `targets` `[B]` and `owners` `[N]`; records with negatives of their own. Any model kind,
    a cross-encoder included (it scores only the records' own pairs). Setting that matters:
    `margin` (1), in the units of the scores.

    Citation:

    ```bibtex
    @incollection{herbrich2000large,
      title = {Large Margin Rank Boundaries for Ordinal Regression},
      author = {Herbrich, Ralf and Graepel, Thore and Obermayer, Klaus},
      booktitle = {Advances in Large Margin Classifiers},
      editor = {Smola, Alexander J. and Bartlett, Peter L. and Schölkopf, Bernhard
        and Schuurmans, Dale},
      publisher = {MIT Press},
      pages = {115--132},
      year = {2000}
    }
    ```
    """

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
    """RankNet: mean(log(1 + exp(negative - positive))) over (query, own negative) pairs.

    Reference: Burges et al., ICML 2005, "Learning to Rank using Gradient Descent" (RankNet):
    the cross-entropy of the pair's order probability sigmoid(positive - negative) when the
    positive is known to come first.

    Inputs: `scores` `[B, N]` (only each query's positive and own negatives are read),
    `targets` `[B]` and `owners` `[N]`; records with negatives of their own. Any model kind,
    a cross-encoder included. No setting of its own.

    Citation:

    ```bibtex
    @inproceedings{burges2005learning,
      title = {Learning to Rank using Gradient Descent},
      author = {Burges, Chris and Shaked, Tal and Renshaw, Erin and Lazier, Ari and Deeds, Matt
        and Hamilton, Nicole and Hullender, Greg},
      booktitle = {Proceedings of the 22nd International Conference on Machine Learning
        (ICML)},
      pages = {89--96},
      year = {2005}
    }
    ```
    """

    def __call__(self, batch: BatchScores) -> Tensor:
        positive, negative = own_pairs(batch)
        return F.softplus(negative - positive).mean()


@register("loss", "cross_entropy")
@dataclass
class PairCrossEntropy(_PairwiseLoss):
    """Binary cross-entropy of every scored pair: each query's positive is relevant (1), its
    own negatives are not (0); the scores are logits.

    Reference: no paper of its own. It is xpmir's `CrossEntropyLoss`, and the objective with
    which Nogueira and Cho, 2019, "Passage Re-ranking with BERT" (arXiv:1901.04085) train the
    monoBERT cross-encoder on relevant and non-relevant (query, passage) pairs.

    Inputs: `scores` `[B, N]` read as logits (each query's positive and own negatives only),
    `targets` `[B]` and `owners` `[N]`; records with negatives of their own. Any model kind,
    but the scores are taken as logits with no scale, which suits cross-encoders best. No
    setting of its own.

    Citation: monoBERT's, as for the pointwise
    [`BinaryCrossEntropy`][xpretrieval.losses.pointwise.BinaryCrossEntropy].
    """

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
    unnormalised ones, sentence-transformers uses 5.

    Reference: Schroff, Kalenichenko and Philbin, CVPR 2015, "FaceNet: A Unified Embedding
    for Face Recognition and Clustering", whose distances are squared euclidean; the plain
    distances and the `distance` choice follow sentence-transformers' `TripletLoss`.

    Inputs: the dense representations `queries` `[B, dim]` and `documents` `[N, dim]` (the
    scores are not read), with `targets` `[B]` and `owners` `[N]` to form (query, positive,
    own negative) triplets; a dense bi-encoder and records with negatives of their own.
    Settings that matter: `margin` (0.5) and `distance` (`euclidean` or `cosine`).

    Citation:

    ```bibtex
    @inproceedings{schroff2015facenet,
      title = {FaceNet: A Unified Embedding for Face Recognition and Clustering},
      author = {Schroff, Florian and Kalenichenko, Dmitry and Philbin, James},
      booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern
        Recognition (CVPR)},
      pages = {815--823},
      year = {2015}
    }
    ```
    """

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
