"""ArcFace: additive angular margin (Deng et al., CVPR 2019, "ArcFace: Additive Angular Margin
Loss for Deep Face Recognition") on the cosine scores of a batch.

InfoNCE where each query's positive scores `scale * cos(theta + margin)` instead of
`scale * cos(theta)`, theta being the angle between query and positive: the positive must
beat every negative by an angle, not by a hair. Past theta + margin = pi, cos(theta + margin)
would rise again; it is replaced by `cos(theta) - margin * sin(margin)` (ArcFace's own fix),
or, with `easy_margin`, the margin applies only where cos(theta) > 0. The margin may grow
from 0 over `margin_warmup_steps` (a margin set during training, as open-retrievals'
`set_margin`), which steadies the start of fine-tuning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.core.hooks import Hook, TrainState
from xpretrieval.losses.base import BatchScores
from xpretrieval.losses.infonce import InfoNCE
from xpretrieval.models.base import DenseBiEncoder


@register("loss", "arcface")
@dataclass
class ArcFace(InfoNCE):
    """InfoNCE with an additive angular margin on each query's positive; needs cosine scores.

    Reference: Deng et al., CVPR 2019, "ArcFace: Additive Angular Margin Loss for Deep Face
    Recognition", applied here to queries and their positive documents instead of faces and
    class centres; the margin that changes during training is as open-retrievals' `set_margin`.

    Inputs: those of [`InfoNCE`][xpretrieval.losses.infonce.InfoNCE] (`scores` `[B, N]`,
    `targets`, `owners`, optional `false_negatives`), where the scores must be cosines: a
    dense bi-encoder with `model.normalize=true` (other models are refused). Settings that
    matter: `scale` (30), `margin` (0.5 radians), `easy_margin`, `margin_warmup_steps`.

    Citation:

    ```bibtex
    @inproceedings{deng2019arcface,
      title = {ArcFace: Additive Angular Margin Loss for Deep Face Recognition},
      author = {Deng, Jiankang and Guo, Jia and Xue, Niannan and Zafeiriou, Stefanos},
      booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern
        Recognition (CVPR)},
      year = {2019},
      doi = {10.1109/CVPR.2019.00482}
    }
    ```
    """

    model_kind: ClassVar[type] = DenseBiEncoder
    needs_cosine_scores: ClassVar[bool] = True

    scale: float = 30.0
    margin: float = 0.5  # radians added to the angle between a query and its positive
    easy_margin: bool = False  # apply the margin only where cos(theta) > 0
    margin_warmup_steps: int = 0  # the margin grows linearly from 0 over these steps

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("margin", self.margin, at_least=0, below=math.pi / 2)  # radians
        check_range("margin_warmup_steps", self.margin_warmup_steps, at_least=0)
        self.current_margin = self.margin_at(1)  # moved by MarginWarmup; not a config field

    def margin_at(self, step: int) -> float:
        """The margin of training step `step` (1-based)."""
        if step >= self.margin_warmup_steps:
            return self.margin
        return self.margin * step / self.margin_warmup_steps

    def logits(self, batch: BatchScores) -> Tensor:
        cosine = batch.scores.clamp(-1.0, 1.0)
        rows = torch.arange(len(cosine), device=cosine.device)
        target = cosine[rows, batch.targets]
        margin = self.current_margin
        sine = (1.0 - target.pow(2)).clamp_min(0.0).sqrt()
        with_margin = target * math.cos(margin) - sine * math.sin(margin)
        if self.easy_margin:
            with_margin = torch.where(target > 0, with_margin, target)
        else:  # beyond theta + margin = pi, a penalty that keeps falling with the angle
            past = target <= math.cos(math.pi - margin)
            with_margin = torch.where(past, target - margin * math.sin(margin), with_margin)
        logits = cosine.index_put((rows, batch.targets), with_margin)
        return logits * self.scale

    def hooks(self, name: str) -> list[Hook]:
        return [MarginWarmup(self, name)] if self.margin_warmup_steps else []


class MarginWarmup(Hook):
    """Sets an ArcFace term's margin for the coming step (a resumed run derives it again from
    its step, so there is no state to keep)."""

    def __init__(self, loss: ArcFace, name: str) -> None:
        self.loss = loss
        self.term = name

    @property
    def key(self) -> str:
        return f"{type(self).__name__}:{self.term}"

    def on_train_start(self, state: TrainState) -> None:
        self.loss.current_margin = self.loss.margin_at(state.step + 1)

    def on_step_end(self, state: TrainState) -> None:
        self.loss.current_margin = self.loss.margin_at(state.step + 1)
