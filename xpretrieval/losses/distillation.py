"""Distillation losses: the student's scores of each record's own candidates (its positive,
then its negatives) against a teacher's scores of the same candidates.

MarginMSE (Hofstätter et al. 2020, "Improving Efficient Neural Ranking Models with
Cross-Architecture Knowledge Distillation"): the mean squared difference between the
student's and the teacher's margins score(positive) - score(negative). KL divergence (as
in listwise distillation): KL(teacher || student) between softmaxes over the candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.data.records import DistillationRecord
from xpretrieval.losses.base import BatchScores, Loss


def own_candidates(batch: BatchScores) -> tuple[Tensor, Tensor]:
    """(student scores, teacher scores), each `[B, 1 + n]`: a record's positive then its n
    negatives, in the order the record gave them."""
    if batch.teacher is None:
        raise ValueError("a distillation loss needs teacher scores: use sampler=distillation")
    rows = len(batch.targets)
    n = batch.teacher.shape[1] - 1
    if batch.scores.shape[1] != rows * (1 + n):
        raise ValueError(f"every record needs {n} negatives, as many as it has teacher scores")
    positive = batch.scores[torch.arange(rows), batch.targets].unsqueeze(1)
    negatives = batch.scores[:, rows:].reshape(rows, rows, n)[
        torch.arange(rows), torch.arange(rows)
    ]
    return torch.cat([positive, negatives], dim=1), batch.teacher.to(batch.scores.dtype)


class _DistillationLoss(Loss):
    """Base of the losses comparing a record's own candidates with the teacher's scores."""

    record_kinds: ClassVar[tuple[type, ...] | None] = (DistillationRecord,)

    def needs_own_negatives(self) -> bool:
        return True


@register("loss", "margin_mse")
@dataclass
class MarginMSE(_DistillationLoss):
    """mean over (positive, negative) pairs of (scale * student margin - teacher margin)^2.

    Reference: Hofstätter et al., 2020, "Improving Efficient Neural Ranking Models with
    Cross-Architecture Knowledge Distillation" (arXiv:2010.02666), which proposed Margin-MSE;
    sentence-transformers' `MarginMSELoss` computes the same quantity. `scale` is this
    project's addition.

    Inputs: `teacher` `[B, 1 + n]` (a teacher's scores of each record's positive, then its n
    negatives: `sampler=distillation`) and the student's `scores` `[B, N]` in the batchwise
    layout (B positives, then each record's n negatives in turn), of which only each
    record's own candidates are read; every record needs exactly n negatives. `targets` gives
    the positives' columns. Any model kind. Setting that matters: `scale` (1).

    Citation:

    ```bibtex
    @article{hofstatter2020improving,
      title = {Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge
        Distillation},
      author = {Hofstätter, Sebastian and Althammer, Sophia and Schröder, Michael
        and Sertkan, Mete and Hanbury, Allan},
      journal = {arXiv preprint arXiv:2010.02666},
      year = {2020}
    }
    ```
    """

    # multiplies the student's scores, to bring them to the teacher's range: a cosine student
    # (margins within 2) learning from a MaxSim or cross-encoder teacher (margins of 1-20)
    scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("scale", self.scale, above=0)

    def __call__(self, batch: BatchScores) -> Tensor:
        student, teacher = own_candidates(batch)
        student = student * self.scale
        student_margins = student[:, :1] - student[:, 1:]
        teacher_margins = teacher[:, :1] - teacher[:, 1:]
        return F.mse_loss(student_margins, teacher_margins)


@register("loss", "kl_distillation")
@dataclass
class KLDistillation(_DistillationLoss):
    """KL(teacher || student) between softmaxes over each record's candidates.

    Reference: Hinton, Vinyals and Dean, 2015, "Distilling the Knowledge in a Neural Network"
    (arXiv:1503.02531): a student matches the teacher's temperature-softened distribution,
    here over a record's candidate documents (listwise distillation) instead of classes,
    and without the paper's temperature-squared factor.

    Inputs: `teacher` `[B, 1 + n]` (a teacher's scores of each record's positive, then its n
    negatives: `sampler=distillation`) and the student's `scores` `[B, N]` in the batchwise
    layout, of which only each record's own candidates are read; every record needs exactly
    n negatives. Any model kind. Setting that matters: `temperature` (1), dividing both
    teacher and student scores.

    Citation:

    ```bibtex
    @article{hinton2015distilling,
      title = {Distilling the Knowledge in a Neural Network},
      author = {Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff},
      journal = {arXiv preprint arXiv:1503.02531},
      year = {2015}
    }
    ```
    """

    temperature: float = 1.0  # both score lists are divided by it

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("temperature", self.temperature, above=0)

    def __call__(self, batch: BatchScores) -> Tensor:
        student, teacher = own_candidates(batch)
        student = (student / self.temperature).log_softmax(dim=1)
        teacher = (teacher / self.temperature).log_softmax(dim=1)
        return F.kl_div(student, teacher, log_target=True, reduction="batchmean")
