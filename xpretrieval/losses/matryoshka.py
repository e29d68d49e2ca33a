"""Matryoshka representation learning (Kusupati et al., NeurIPS 2022): the ranking loss summed
over nested prefixes of dense vectors, so that a vector cut to its first m dimensions still
retrieves well (smaller indexes, faster search, one model)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from xpretrieval.core.config import register
from xpretrieval.losses.base import BatchScores
from xpretrieval.losses.infonce import InfoNCE
from xpretrieval.models.base import DenseBiEncoder


@register("loss", "matryoshka")
@dataclass
class Matryoshka(InfoNCE):
    """InfoNCE on the full vectors plus InfoNCE on each prefix of `dims` dimensions (averaged
    over the sizes), scored by dot product of the prefixes, L2-normalised when `normalize`
    (set it as the model's own `normalize`).

    Reference: Kusupati et al., NeurIPS 2022, "Matryoshka Representation Learning"; like
    sentence-transformers' `MatryoshkaLoss` around its `MultipleNegativesRankingLoss`, one
    ranking loss applied to several prefixes. Here the value is the plain mean over the sizes,
    the full vectors (scored by the model's own score) counting as one of them.

    Inputs: those of [`InfoNCE`][xpretrieval.losses.infonce.InfoNCE] (`scores` `[B, N]`,
    `targets`, `owners`, optional `false_negatives`) plus the dense representations
    `queries` `[B, dim]` and `documents` `[N, dim]`, which only a dense bi-encoder gives.
    Settings that matter: `dims` (sizes at or above the model's dimension are skipped),
    `normalize`, and InfoNCE's `scale` and `in_batch_negatives`.

    Citation:

    ```bibtex
    @inproceedings{kusupati2022matryoshka,
      title = {Matryoshka Representation Learning},
      author = {Kusupati, Aditya and Bhatt, Gantavya and Rege, Aniket and Wallingford, Matthew
        and Sinha, Aditya and Ramanujan, Vivek and Howard-Snyder, William and Chen, Kaifeng
        and Kakade, Sham and Jain, Prateek and Farhadi, Ali},
      booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
      volume = {35},
      year = {2022}
    }
    ```
    """

    model_kind: ClassVar[type] = DenseBiEncoder

    dims: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    normalize: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.dims or min(self.dims) < 1:
            raise ValueError(f"dims must list sizes >= 1, got {self.dims}")

    def __call__(self, batch: BatchScores) -> Tensor:
        if batch.queries is None or batch.documents is None or batch.queries.dim() != 2:
            raise ValueError("Matryoshka needs dense [n, dim] representations")
        losses = [super().__call__(batch)]
        for size in sorted(set(self.dims)):
            if size >= batch.queries.shape[1]:
                continue
            queries, documents = batch.queries[:, :size], batch.documents[:, :size]
            if self.normalize:
                queries, documents = F.normalize(queries, dim=-1), F.normalize(documents, dim=-1)
            losses.append(super().__call__(replace(batch, scores=queries @ documents.T)))
        return sum(losses) / len(losses)
