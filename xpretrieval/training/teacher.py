"""Teacher scores computed inside a distillation run: a trained model (a cross-encoder, or
any model of the framework) scores each training query's first-stage candidates and its
judged documents, and the run it writes is the one `sampler.teacher_run` would otherwise name."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from xpretrieval.core.device import Precision
from xpretrieval.data.collection import Collection
from xpretrieval.data.run import Run, write_trec_run
from xpretrieval.models.base import ModelConfig
from xpretrieval.models.encoding import Batching
from xpretrieval.retrieval.rerank import FirstStage, rerank_candidates

logger = logging.getLogger(__name__)


@dataclass
class TeacherConfig:
    """The model whose scores a distillation sampler learns from, and the candidates it
    scores; off while `model` is null."""

    # +model@teacher.model=cross_encoder teacher.model.name_or_path=<checkpoint>
    model: ModelConfig | None = None
    # each training query's candidates: a run file's, scoreddocs' or BM25's top_k
    candidates: FirstStage = field(default_factory=lambda: FirstStage(top_k=100))

    def __post_init__(self) -> None:
        if self.model is not None and not self.candidates.enabled:
            raise ValueError("candidates.top_k must be > 0: the documents the teacher scores")

    @property
    def enabled(self) -> bool:
        return self.model is not None

    def candidates_of(self, collection: Collection) -> Run:
        """The first stage's candidates of each training query, then its judged documents
        that the first stage missed (MarginMSE needs the teacher's score of every positive)."""
        candidates = self.candidates.run(collection, "teacher.candidates")
        for query_id, judged in collection.qrels.items():
            ranked = candidates.setdefault(query_id, [])
            present = {doc for doc, _ in ranked}
            ranked.extend((doc, 0.0) for doc in sorted(judged) if doc not in present)
        return candidates

    def write_run(
        self,
        collection: Collection,
        path: Path,
        batching: Batching,
        device: torch.device,
        precision: Precision,
    ) -> Path:
        """Score the candidates of `collection` with the teacher and write its TREC run to
        `path`; a run resumed in the same directory reuses the file it wrote."""
        if path.is_file():
            logger.info("Teacher scores: reusing %s", path)
            return path
        if self.model is None:
            raise ValueError("teacher.model is not set: no teacher to score with")
        name = getattr(self.model, "name_or_path", type(self.model).__name__)
        logger.info("Teacher scores: %s on each training query's candidates", name)
        model = self.model.build().to(device)
        model.eval()
        candidates = self.candidates_of(collection)
        retrieval = rerank_candidates(model, collection, candidates, batching, device, precision)
        write_trec_run(path, retrieval.run)
        seconds = retrieval.statistics["rerank_seconds"]
        logger.info("Teacher scores written to %s (%.0f s)", path, seconds)
        return path
