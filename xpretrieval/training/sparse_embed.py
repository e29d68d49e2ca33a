"""One SparseEmbed training step as a function, with neural-cherche's `train_sparse_embed`
signature and meaning, built from the framework's own trainer and loss terms.

`python -m xpretrieval train +experiment=sparse_embed` trains with the same three terms
(`losses.dense`, `losses.sparse`, `losses.flops`); this function is for users who write
their own loop. Differences from neural-cherche, on purpose: in-batch negatives are all
the batch's other documents (not one rolled positive); FLOPS is penalised per side above
`threshold_flops` with a gradient at any distance (neural-cherche clips |threshold - FLOPS|
to [0, 1], which has no gradient more than 1 away and also punishes sparser vectors).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from xpretrieval.data.records import PairwiseRecord, Text
from xpretrieval.losses.base import Loss
from xpretrieval.losses.infonce import InfoNCE
from xpretrieval.losses.regularizers import Flops
from xpretrieval.models.sparse_embed import SparseEmbedEncoder
from xpretrieval.training.trainers import BatchwiseTrainer


def train_sparse_embed(
    model: SparseEmbedEncoder,
    optimizer: torch.optim.Optimizer,
    anchor: Sequence[str],
    positive: Sequence[str],
    negative: Sequence[str],
    flops_loss_weight: float = 1e-4,
    sparse_loss_weight: float = 0.1,
    dense_loss_weight: float = 1.0,
    in_batch_negatives: bool = False,
    threshold_flops: float = 30.0,
) -> dict[str, Tensor]:
    """One optimiser step on (anchor, positive, negative) triples; returns the unweighted
    `dense`, `sparse` and `flops` losses of the step (detached)."""
    if not len(anchor) == len(positive) == len(negative):
        raise ValueError(
            f"anchor, positive and negative must have one text per triple, got "
            f"{len(anchor)}, {len(positive)} and {len(negative)} texts"
        )
    # ranking by each part of the score (softmax cross-entropy on raw scores), and FLOPS
    ranking = {"scale": 1.0, "in_batch_negatives": in_batch_negatives}
    losses: dict[str, Loss] = {
        "dense": InfoNCE(weight=dense_loss_weight, part="dense", **ranking),
        "sparse": InfoNCE(weight=sparse_loss_weight, part="sparse", **ranking),
        "flops": Flops(weight=flops_loss_weight, threshold=threshold_flops),
    }
    batch = [
        PairwiseRecord(Text(str(i), a), Text(f"{i}+", p), Text(f"{i}-", n))
        for i, (a, p, n) in enumerate(zip(anchor, positive, negative, strict=True))
    ]
    trainer = BatchwiseTrainer()  # its loss terms, on the batch's texts encoded in one pass
    query_texts, doc_texts = trainer.texts(batch)
    queries, documents = model.forward_queries(query_texts), model.forward_documents(doc_texts)
    output = trainer.loss_terms(model, batch, queries, documents, losses)
    total = torch.stack([losses[name].weight * term for name, term in output.terms.items()]).sum()
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return {name: term.detach() for name, term in output.terms.items()}
