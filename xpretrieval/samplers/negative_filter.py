"""A cross-encoder's veto over hard negatives, as sentence-transformers' `mine_hard_negatives`
offers it: a candidate that the cross-encoder scores too close to the query's positive (an
absolute or relative margin) or too high (a maximum) is likely an unjudged relevant document,
and is dropped from the pool before any negative is drawn (NV-Retriever, Moreira et al. 2024).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass

import torch

from xpretrieval.core import distributed
from xpretrieval.core.checks import check_range
from xpretrieval.core.device import Precision, resolve_device
from xpretrieval.core.errors import NonFiniteError
from xpretrieval.data.collection import Collection
from xpretrieval.data.run import Run
from xpretrieval.models.base import PairScorer
from xpretrieval.models.encoding import Batching
from xpretrieval.models.loading import load
from xpretrieval.retrieval.rerank import rerank_candidates

logger = logging.getLogger(__name__)

# the criteria, in the order they are applied: a dropped candidate is counted under the first
CRITERIA = ("absolute_margin", "relative_margin", "max_score")


@dataclass
class CrossEncoderFilter:
    """Keeps a hard negative only if its cross-encoder score `s` passes every criterion set:

    - `s <= p - absolute_margin`,
    - `s <= p - |p| * relative_margin` (that is `p * (1 - relative_margin)`, as `p > 0` here),
    - `s <= max_score`,

    where `p` is the score of the query's *lowest-scored* positive (judgement at least the
    sampler's min_relevance): a negative must rank below every positive, so the hardest one
    bounds it, as sentence-transformers decides. Scores are sigmoid(logit) in (0, 1) by
    default, what sentence-transformers' `CrossEncoder.predict` returns for a one-logit model
    with its default activation, so its settings carry over; with `sigmoid=false` they are raw
    logits, where a relative margin has no meaning (shifting every logit changes what it
    drops) and is refused.
    Judged documents in the pool (`judged_negatives`) are kept unscored: a judgement outranks a
    model. Off while `model` is null."""

    model: str | None = None  # a cross-encoder checkpoint folder or hub id (`xpretrieval.load`)
    absolute_margin: float | None = None  # drop s > p - absolute_margin; null: off
    relative_margin: float | None = None  # in [0, 1): drop s > p - |p| * margin; null: off
    max_score: float | None = None  # drop s > max_score; null: off
    sigmoid: bool = True  # compare sigmoid(logit) (sentence-transformers' scores); false: logits
    batch_size: int = 32  # (query, document) pairs per forward pass
    device: str | None = None  # cpu, cuda, mps; null: the best available, as `xpretrieval.load`
    precision: Precision = Precision.auto  # auto: bf16 autocast on a GPU that supports it

    def __post_init__(self) -> None:
        check_range("batch_size", self.batch_size, at_least=1)
        unit = {"below": 1} if self.sigmoid else {}  # sigmoid scores lie in (0, 1)
        check_range("absolute_margin", self.absolute_margin, at_least=0, optional=True, **unit)
        check_range("relative_margin", self.relative_margin, at_least=0, below=1, optional=True)
        if self.sigmoid:
            check_range("max_score", self.max_score, above=0, below=1, optional=True)
        else:
            check_range("max_score", self.max_score, optional=True)
        if self.relative_margin is not None and not self.sigmoid:
            raise ValueError(
                f"relative_margin={self.relative_margin} reads scores as fractions of the "
                "positive's, which raw logits are not (they may be negative, and shifting them "
                "changes what it drops); set sigmoid=true, or use absolute_margin"
            )
        given = [name for name in CRITERIA if getattr(self, name) is not None]
        if self.model is None and given:
            raise ValueError(f"{given[0]}={getattr(self, given[0])} needs model: a cross-encoder")
        if self.model is not None and not given:
            raise ValueError(
                f"model={self.model!r} alone drops nothing; set absolute_margin, relative_margin "
                "or max_score"
            )

    @property
    def enabled(self) -> bool:
        return self.model is not None

    def dropped_by(self, score: float, positive: float | None) -> str | None:
        """The first criterion that drops a candidate scored `score` when the query's lowest
        positive scores `positive` (None: no positive was scored, so only max_score applies);
        None when it is kept."""
        if positive is not None:
            if self.absolute_margin is not None and score > positive - self.absolute_margin:
                return "absolute_margin"
            relative = self.relative_margin
            if relative is not None and score > positive - abs(positive) * relative:
                return "relative_margin"
        if self.max_score is not None and score > self.max_score:
            return "max_score"
        return None

    def apply(
        self, collection: Collection, pools: dict[str, list[str]], min_relevance: int
    ) -> dict[str, list[str]]:
        """`pools` (query id -> hard-negative candidates) without the candidates the model
        drops. The main process scores each candidate and positive once and the others receive
        its pools, so several processes agree on them."""
        filtered = None
        if distributed.world().main:
            filtered = self._filtered(collection, pools, min_relevance)
        return distributed.broadcast(filtered)

    def _filtered(
        self, collection: Collection, pools: dict[str, list[str]], min_relevance: int
    ) -> dict[str, list[str]]:
        """`apply`'s work in one process: score, drop, count in one log line."""
        qrels = collection.qrels
        positives = {
            query_id: [d for d, grade in qrels[query_id].items() if grade >= min_relevance]
            for query_id in pools
        }
        scored = {  # the unjudged candidates and the positives, of queries with a pool
            query_id: [d for d in pool if d not in qrels[query_id]]
            + [d for d in positives[query_id] if d in collection.documents]
            for query_id, pool in pools.items()
            if pool
        }
        scores = self.scores(collection, scored)
        kept, drops = {}, Counter[str]()
        for query_id, pool in pools.items():
            of_query = scores.get(query_id, {})
            positive = min(
                (of_query[d] for d in positives[query_id] if d in of_query), default=None
            )
            kept[query_id] = []
            for doc in pool:
                reason = self.dropped_by(of_query[doc], positive) if doc in of_query else None
                if reason is None:
                    kept[query_id].append(doc)
                drops[reason or "kept"] += 1
        emptied = sum(bool(pools[q]) and not kept[q] for q in pools)
        logger.info(
            "Hard-negative filter (%s): kept %d of %d candidates; dropped %d (%s); %d of %d "
            "queries left without a hard negative (they draw random ones)",
            self.model,
            drops["kept"],
            sum(drops.values()),
            sum(drops.values()) - drops["kept"],
            ", ".join(
                f"{name} {drops[name]}" for name in CRITERIA if getattr(self, name) is not None
            ),
            emptied,
            sum(bool(pool) for pool in pools.values()),
        )
        return kept

    def scores(
        self, collection: Collection, pairs: dict[str, list[str]]
    ) -> dict[str, dict[str, float]]:
        """Query id -> document id -> the model's score of the pair (sigmoid'ed with
        `sigmoid`), each pair of `pairs` scored once."""
        assert self.model is not None
        device = resolve_device(self.device)
        model = load(self.model, str(device))
        if not isinstance(model, PairScorer):  # the compatibility check refuses it before
            raise TypeError(f"{self.model} is a {type(model).__name__}, not a cross-encoder")
        logger.info(
            "Hard-negative filter: %s scores %d pairs of %d queries",
            self.model,
            sum(map(len, pairs.values())),
            len(pairs),
        )
        candidates: Run = {q: [(d, 0.0) for d in pairs.get(q, [])] for q in collection.queries}
        batching = Batching(self.batch_size)
        run = rerank_candidates(model, collection, candidates, batching, device, self.precision).run
        del model
        scores = {}
        for query_id, ranking in run.items():
            if not ranking:
                continue
            for doc, value in ranking:
                if not math.isfinite(value):
                    raise NonFiniteError(
                        f"sampler.hard_negatives.filter.model={self.model} scored query "
                        f"{query_id}, document {doc} {value}: its weights are not finite"
                    )
            values = torch.tensor([score for _, score in ranking], dtype=torch.float64)
            if self.sigmoid:
                values = torch.sigmoid(values)
            scores[query_id] = dict(zip((d for d, _ in ranking), values.tolist(), strict=True))
        return scores
