"""Pointwise losses: each (query, document) score against its relevance label, as xpmir's
pointwise losses. The score of record i is scores[i, i] (its query with its own document)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from xpretrieval.core.config import register
from xpretrieval.data.records import PointwiseRecord
from xpretrieval.losses.base import BatchScores, Loss


def labelled_scores(batch: BatchScores) -> tuple[Tensor, Tensor]:
    """(each record's score, its label), each `[B]`."""
    if batch.labels is None:
        raise ValueError("a pointwise loss needs labels: use sampler=pointwise trainer=pointwise")
    scores = batch.scores[range(len(batch.targets)), batch.targets]
    return scores, batch.labels.to(scores.dtype)


@register("loss", "bce")
@dataclass
class BinaryCrossEntropy(Loss):
    """Binary cross-entropy of the scores, read as logits, against 0/1 labels.

    Reference: the objective with which Nogueira and Cho, 2019, "Passage Re-ranking with
    BERT" (arXiv:1901.04085) fine-tune the monoBERT cross-encoder: each (query, passage) pair
    classified as relevant or not.

    Inputs: `labels` `[B]` (0 or 1, from pointwise records: `sampler=pointwise
    trainer=pointwise`) and each record's own score, `scores[i, targets[i]]` (the diagonal
    of `[B, B]` scores). Any model kind; a cross-encoder scores only those B pairs. No
    setting of its own.

    Citation:

    ```bibtex
    @article{nogueira2019passage,
      title = {Passage Re-ranking with BERT},
      author = {Nogueira, Rodrigo and Cho, Kyunghyun},
      journal = {arXiv preprint arXiv:1901.04085},
      year = {2019}
    }
    ```
    """

    record_kinds: ClassVar[tuple[type, ...] | None] = (PointwiseRecord,)

    def __call__(self, batch: BatchScores) -> Tensor:
        scores, labels = labelled_scores(batch)
        return F.binary_cross_entropy_with_logits(scores, labels)


@register("loss", "mse")
@dataclass
class MeanSquaredError(Loss):
    """Mean squared difference between the scores and the labels.

    Reference: no paper: a least-squares regression of each score onto its (possibly graded)
    relevance label, as in xpmir's pointwise losses. No citation.

    Inputs: `labels` `[B]` (from pointwise records: `sampler=pointwise trainer=pointwise`)
    and each record's own score, `scores[i, targets[i]]` (the diagonal of `[B, B]` scores),
    which must be on the labels' scale. Any model kind. No setting of its own.
    """

    record_kinds: ClassVar[tuple[type, ...] | None] = (PointwiseRecord,)

    def __call__(self, batch: BatchScores) -> Tensor:
        scores, labels = labelled_scores(batch)
        return F.mse_loss(scores, labels)
