"""Sparsity regularisers for learned sparse models, as weighted loss terms.

FLOPS (Paria et al., ICLR 2020, "Minimizing FLOPs to Learn Efficient Sparse
Representations"): sum_j (mean_i |w_ij|)^2, the expected number of multiplications of a
query-document product when term j is active with probability mean_i |w_ij|. L1: the mean
over texts of sum_j |w_ij|. Both are computed over every query and every document of the
batch given to them, with separate query and document weights, and their overall weight
can warm up from 0 (SPLADE trains better when sparsity is enforced progressively).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

import torch
from torch import Tensor

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.core.hooks import Hook, TrainState
from xpretrieval.losses.base import BatchScores, Loss
from xpretrieval.models.base import TermWeighted


class Warmup(Enum):
    """How a regulariser's weight grows from 0 to `weight` over `warmup_steps`."""

    # weight * (step / warmup_steps)^2, as naver/splade; neural-cherche's FlopsScheduler
    # is the same curve one step ahead (its n-th get() is weight_at(n + 1))
    quadratic = "quadratic"
    linear = "linear"  # weight * step / warmup_steps


@dataclass
class Regularizer(Loss):
    """A penalty on the representations: query_weight * P(queries) + doc_weight * P(documents).

    Inputs: the vocabulary-sized term weights `query_terms` `[B, vocab]` and `doc_terms`
    `[N, vocab]` of the batch's queries and documents (every document of the batch, negatives
    included), which only term-weighted (sparse) models give: `model=splade`,
    `model=sparse_embed`. The scores are not read: any record the batchwise trainer reads
    fits (the pointwise trainer gives no term weights). Settings that matter: `query_weight`,
    `doc_weight`, `warmup_steps`, `warmup`, and
    `target_doc_active_dims` with `adapt_rate`.
    """

    model_kind: ClassVar[type] = TermWeighted

    # naver/splade's SPLADE v2 settings: documents are pushed to be sparse, queries more so
    query_weight: float = 5e-4
    doc_weight: float = 3e-4
    warmup_steps: int = 1000  # steps over which the overall weight grows from 0; 0: constant
    warmup: Warmup = Warmup.quadratic
    # when set, the weight is scaled up or down after each step until documents have about
    # this many active dimensions: scale *= (active / target) ** adapt_rate
    target_doc_active_dims: float | None = None
    adapt_rate: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("query_weight", "doc_weight", "warmup_steps", "adapt_rate"):
            check_range(name, getattr(self, name), at_least=0)
        check_range("target_doc_active_dims", self.target_doc_active_dims, above=0, optional=True)
        self.scale = 1.0  # adaptive multiplier, moved by adapt(); not a config field

    def weight_at(self, step: int) -> float:
        weight = self.weight * self.scale
        if step >= self.warmup_steps:
            return weight
        progress = step / self.warmup_steps
        return weight * (progress**2 if self.warmup is Warmup.quadratic else progress)

    def adapt(self, doc_active_dims: float) -> None:
        """Move the scale towards the target: up while documents are denser than it."""
        assert self.target_doc_active_dims is not None
        ratio = max(doc_active_dims, 1e-6) / self.target_doc_active_dims
        self.scale = min(1e3, max(1e-3, self.scale * ratio**self.adapt_rate))

    def state_dict(self) -> dict[str, float]:
        return {"scale": self.scale}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.scale = state.get("scale", 1.0)

    def hooks(self, name: str) -> list[Hook]:
        return [] if self.target_doc_active_dims is None else [TargetSparsity(self, name)]

    def __call__(self, batch: BatchScores) -> Tensor:
        if batch.query_terms is None or batch.doc_terms is None:
            raise ValueError(
                f"{type(self).__name__} needs vocabulary term weights, which only sparse models "
                "(model=splade, model=sparse_embed) give"
            )
        queries, documents = batch.query_terms, batch.doc_terms
        return self.query_weight * self.penalty(queries) + self.doc_weight * self.penalty(documents)

    @abstractmethod
    def penalty(self, reps: Tensor) -> Tensor:
        """The penalty of `[n, dim]` representations."""

    def statistics(self, batch: BatchScores) -> dict[str, Tensor]:
        """Each side's penalty and active dimensions, and the expected posting-list FLOPS."""
        queries, documents = batch.query_terms, batch.doc_terms
        if queries is None or documents is None:
            return {}
        active_q, active_d = (queries != 0).float(), (documents != 0).float()
        return {
            "query_penalty": self.penalty(queries),
            "doc_penalty": self.penalty(documents),
            "query_active_dims": active_q.sum(dim=-1).mean(),
            "doc_active_dims": active_d.sum(dim=-1).mean(),
            "query_sparsity_ratio": 1 - active_q.mean(),
            "doc_sparsity_ratio": 1 - active_d.mean(),
            # terms a query shares with a document on average: the postings it visits per document
            "expected_flops": (active_q.mean(dim=0) * active_d.mean(dim=0)).sum(),
            "scale": torch.tensor(self.scale),
        }


class TargetSparsity(Hook):
    """After each step, adapts a regulariser's scale to the documents' active dimensions."""

    def __init__(self, regularizer: Regularizer, name: str) -> None:
        self.regularizer = regularizer
        self.statistic = f"{name}/doc_active_dims"
        self.term = name

    @property
    def key(self) -> str:
        return f"{type(self).__name__}:{self.term}"

    def on_step_end(self, state: TrainState) -> None:
        # reads the statistic every step: one device synchronisation per step, by design
        self.regularizer.adapt(float(state.statistics[self.statistic]))


@register("loss", "flops")
@dataclass
class Flops(Regularizer):
    """FLOPS regulariser; with `threshold` > 0, no penalty while FLOPS stays below it.

    Reference: Paria et al., ICLR 2020, "Minimizing FLOPs to Learn Efficient Sparse
    Representations", brought to learned sparse retrieval by SPLADE (Formal, Piwowarski and
    Clinchant, SIGIR 2021, "SPLADE: Sparse Lexical and Expansion Model for First Stage
    Ranking"). Follows naver/splade's FLOPS regulariser and its quadratic warm-up; `threshold`
    is neural-cherche's `threshold_flops`.

    Inputs: those of [`Regularizer`][xpretrieval.losses.regularizers.Regularizer]
    (`query_terms`, `doc_terms`). Setting of its own: `threshold` (0).

    Citation:

    ```bibtex
    @inproceedings{paria2020minimizing,
      title = {Minimizing FLOPs to Learn Efficient Sparse Representations},
      author = {Paria, Biswajit and Yeh, Chih-Kuan and Yen, Ian E. H. and Xu, Ning
        and Ravikumar, Pradeep and Póczos, Barnabás},
      booktitle = {International Conference on Learning Representations (ICLR)},
      year = {2020}
    }

    @inproceedings{formal2021splade,
      title = {SPLADE: Sparse Lexical and Expansion Model for First Stage Ranking},
      author = {Formal, Thibault and Piwowarski, Benjamin and Clinchant, Stéphane},
      booktitle = {Proceedings of the 44th International ACM SIGIR Conference on Research
        and Development in Information Retrieval},
      year = {2021}
    }
    ```
    """

    threshold: float = 0.0  # neural-cherche's threshold_flops, without its zero-gradient clip

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("threshold", self.threshold, at_least=0)

    def penalty(self, reps: Tensor) -> Tensor:
        return torch.relu(flops(reps) - self.threshold)


@register("loss", "l1")
@dataclass
class L1(Regularizer):
    """L1 regulariser: the mean total weight of a representation.

    Reference: the L1 sparsity term of SNRM (Zamani et al., CIKM 2018, "From Neural
    Re-Ranking to Neural Ranking: Learning a Sparse Representation for Inverted Indexing").
    Unlike FLOPS, it does not push the active terms to spread evenly over the vocabulary.

    Inputs: those of [`Regularizer`][xpretrieval.losses.regularizers.Regularizer]
    (`query_terms`, `doc_terms`). No setting of its own.

    Citation:

    ```bibtex
    @inproceedings{zamani2018neural,
      title = {From Neural Re-Ranking to Neural Ranking: Learning a Sparse Representation
        for Inverted Indexing},
      author = {Zamani, Hamed and Dehghani, Mostafa and Croft, W. Bruce
        and Learned-Miller, Erik and Kamps, Jaap},
      booktitle = {Proceedings of the 27th ACM International Conference on Information and
        Knowledge Management (CIKM)},
      pages = {497--506},
      year = {2018}
    }
    ```
    """

    def penalty(self, reps: Tensor) -> Tensor:
        return reps.abs().sum(dim=-1).mean()


def flops(reps: Tensor) -> Tensor:
    """sum_j (mean_i |reps_ij|)^2 over the rows i of `reps` [n, dim]."""
    return reps.abs().mean(dim=0).pow(2).sum()
