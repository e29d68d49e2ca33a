"""Training on long documents' passages (`dataset.train.passages`): each document of a batch read
as its first window (FirstP training, Dai and Callan 2019), and with `positive=best` each
positive as its window that the model being trained scores highest for the query, chosen at
the step that trains on it (MaxP training: the relevant part of a long document, not its
opening, is what the model learns to match)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from xpretrieval.core.device import Precision, autocast
from xpretrieval.data.passages import Passages, PositivePassage
from xpretrieval.data.records import Text
from xpretrieval.models.base import BiEncoder, PairScorer, TrainableModel


@dataclass
class PassagePicker:
    """Replaces the document texts of each batch of records by the passages trained on."""

    passages: Passages
    model: TrainableModel
    precision: Precision = Precision.auto

    def __call__(self, batch: list) -> list:
        """`batch` with every document (not query) read as its first window, or with
        `positive=best` each positive as its best window under the current weights."""
        best: list[str | None] = [None] * len(batch)
        if self.passages.positive is PositivePassage.best:
            best = self.best_positives(batch)
        pairs = zip(batch, best, strict=True)
        return [self._passages_of(record, positive) for record, positive in pairs]

    def _passages_of(self, record: Any, positive: str | None) -> Any:
        first = self.passages.window
        changes: dict[str, Any] = {}
        for field in fields(record):
            value = getattr(record, field.name)
            if field.name == "query":
                continue
            if field.name == "positive" and positive is not None:
                changes[field.name] = Text(value.id, positive)
            elif isinstance(value, Text):
                changes[field.name] = Text(value.id, first(value.text, 0))
            elif isinstance(value, tuple) and value and isinstance(value[0], Text):
                changes[field.name] = tuple(Text(t.id, first(t.text, 0)) for t in value)
        return replace(record, **changes)

    def best_positives(self, batch: list) -> list[str | None]:
        """Each record's positive window that the model scores highest for its query (None for
        a positive that fits one window)."""
        candidates = [self.passages.every_window(record.positive.text) for record in batch]
        pending = [
            (i, w) for i, windows in enumerate(candidates) if len(windows) > 1 for w in windows
        ]
        best: dict[int, tuple[float, str]] = {}
        if pending:
            chunk = sum(1 + len(record.negatives) for record in batch)  # documents a step encodes
            queries = [record.query.text for record in batch]
            scores = self._scores(queries, pending, chunk)
            for (i, window), score in zip(pending, scores, strict=True):
                if i not in best or score > best[i][0]:
                    best[i] = (score, window)
        return [best[i][1] if i in best else None for i in range(len(batch))]

    def _scores(
        self, queries: list[str], pending: list[tuple[int, str]], chunk: int
    ) -> list[float]:
        """The score of each (query row, window) of `pending`, `chunk` windows at a time, without
        gradients and with dropout off (the model is put back in the mode it was in)."""
        model, scores = self.model, []
        training = model.training
        model.eval()
        try:
            with torch.inference_mode(), autocast(model.device, self.precision):
                reps = model.forward_queries(queries) if isinstance(model, BiEncoder) else None
                for start in range(0, len(pending), chunk):
                    part = pending[start : start + chunk]
                    rows, columns = torch.tensor([i for i, _ in part]), torch.arange(len(part))
                    texts = [window for _, window in part]
                    if isinstance(model, PairScorer):
                        pairs = torch.zeros(len(queries), len(part), dtype=torch.bool)
                        pairs[rows, columns] = True
                        found = model.score_texts(queries, texts, pairs)
                    else:
                        assert isinstance(model, BiEncoder) and reps is not None
                        found = model.score(reps, model.forward_documents(texts))
                    scores += found[rows.to(found.device), columns.to(found.device)].tolist()
        finally:
            model.train(training)
        return scores
