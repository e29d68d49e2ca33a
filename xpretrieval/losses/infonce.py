"""InfoNCE, also called the multiple-negatives ranking loss.

Henderson et al. 2017 ("Efficient Natural Language Response Suggestion for Smart Reply"),
van den Oord et al. 2018 (InfoNCE). Each query must pick its positive out of its own
negatives and, with in-batch negatives, every other document of the batch: a softmax
cross-entropy over `scale * score`. The similarity (dot or cosine) is the model's own
(`model.normalize`), so that training and retrieval always score alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register
from xpretrieval.losses.base import BatchScores, Loss


@register("loss", "infonce")
@dataclass
class InfoNCE(Loss):
    """Softmax cross-entropy of each query's positive among its candidate documents.

    Reference: Henderson et al., 2017, "Efficient Natural Language Response Suggestion for
    Smart Reply" (arXiv:1705.00652), which trains on in-batch negatives, and van den Oord
    et al., 2018, "Representation Learning with Contrastive Predictive Coding"
    (arXiv:1807.03748), which named the loss InfoNCE. The defaults follow sentence-transformers'
    `MultipleNegativesRankingLoss` (scale 20 on cosine scores); `symmetric` is its
    `MultipleNegativesSymmetricRankingLoss`; with `scale: 1` and `in_batch_negatives: false`
    (the `softmax_cross_entropy` preset) it is xpmir's `SoftmaxCrossEntropy`.

    Inputs:

    - `scores` `[B, N]`: every query of the batch against every document of the batch, the
      records' positives first, then their negatives (the batchwise trainer's layout);
    - `targets` `[B]`: the column of each query's positive; `owners` `[N]`: the row of the
      query that brought each column, which tells its own negatives from in-batch ones;
    - `false_negatives` `[B, N]` (optional): columns masked when `mask_false_negatives`.

    Any model kind and any record the batchwise trainer reads: pairs without negatives need
    `in_batch_negatives: true`, with which a cross-encoder scores every (query, document)
    pair of the batch. Settings that matter: `scale` (about 20 for cosine scores, 1 for raw dot
    products or cross-encoder logits), `in_batch_negatives`, `symmetric`, `hardest_in_batch`.

    Citation:

    ```bibtex
    @article{henderson2017efficient,
      title = {Efficient Natural Language Response Suggestion for Smart Reply},
      author = {Henderson, Matthew and Al-Rfou, Rami and Strope, Brian and Sung, Yun-hsuan
        and Lukács, László and Guo, Ruiqi and Kumar, Sanjiv and Miklos, Balint
        and Kurzweil, Ray},
      journal = {arXiv preprint arXiv:1705.00652},
      year = {2017}
    }

    @article{oord2018representation,
      title = {Representation Learning with Contrastive Predictive Coding},
      author = {van den Oord, Aaron and Li, Yazhe and Vinyals, Oriol},
      journal = {arXiv preprint arXiv:1807.03748},
      year = {2018}
    }
    ```
    """

    scale: float = 20.0  # inverse temperature; 20 suits cosine scores, ~1 suits raw dot products
    in_batch_negatives: bool = True  # other queries' documents count as negatives
    symmetric: bool = False  # also pick each positive's query among the batch's queries
    label_smoothing: float = 0.0  # share of the target probability spread over all candidates
    # online mining: of the other queries' documents, only the k scoring highest for a query
    # count as its negatives (its own negatives always do); null: all of them
    hardest_in_batch: int | None = None
    # a column holding one of the query's positives again (the same document brought by
    # another record, or another positive of the same query) is not counted as its negative
    mask_false_negatives: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("scale", self.scale, above=0)
        check_range("label_smoothing", self.label_smoothing, at_least=0, below=1)
        if self.hardest_in_batch is not None and (
            self.hardest_in_batch < 1 or not self.in_batch_negatives or self.symmetric
        ):
            raise ValueError(
                "hardest_in_batch must be >= 1, with in_batch_negatives=true and "
                f"symmetric=false, got {self.hardest_in_batch}"
            )
        if self.symmetric and not self.in_batch_negatives:
            raise ValueError(
                "symmetric=true needs in_batch_negatives=true: without them each document "
                "has only its own query to choose"
            )

    def needs_own_negatives(self) -> bool:
        return not self.in_batch_negatives

    def logits(self, batch: BatchScores) -> Tensor:
        """The softmax's inputs, `[B, N]`: scaled scores (a margin loss changes the targets')."""
        return batch.scores * self.scale

    def __call__(self, batch: BatchScores) -> Tensor:
        logits = self.logits(batch)
        if self.mask_false_negatives and batch.false_negatives is not None:
            logits = logits.masked_fill(batch.false_negatives, float("-inf"))
        own = batch.owners.unsqueeze(0) == torch.arange(len(logits), device=logits.device)[:, None]
        if not self.in_batch_negatives:
            logits = logits.masked_fill(~own, float("-inf"))
        elif self.hardest_in_batch is not None:
            others = logits.detach().masked_fill(own, float("-inf"))
            k = min(self.hardest_in_batch, others.shape[1])
            kept = torch.zeros_like(own).scatter(1, others.topk(k, dim=1).indices, True)
            logits = logits.masked_fill(~(own | kept), float("-inf"))
        smoothing = self.label_smoothing
        loss = smoothed_cross_entropy(logits, batch.targets, smoothing)
        if self.symmetric:
            # row i: positive document of query i against all queries of the batch
            backward = logits[:, batch.targets].T
            labels = torch.arange(len(backward), device=logits.device)
            loss = (loss + smoothed_cross_entropy(backward, labels, smoothing)) / 2
        return loss


def smoothed_cross_entropy(logits: Tensor, targets: Tensor, smoothing: float) -> Tensor:
    """Mean cross-entropy of `targets` where the target distribution gives `smoothing` evenly
    to the candidates of each row: those with a finite logit (-inf marks a non-candidate)."""
    log_p = logits.log_softmax(dim=-1)
    loss = -log_p.gather(1, targets.unsqueeze(1)).squeeze(1)
    if smoothing:
        candidates = torch.isfinite(logits)
        spread = -log_p.where(candidates, 0.0).sum(dim=-1) / candidates.sum(dim=-1)
        loss = (1 - smoothing) * loss + smoothing * spread
    return loss.mean()
