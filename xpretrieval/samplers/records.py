"""Training records: plain typed values that samplers yield and trainers consume."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Text:
    """A query or a document: its id and its text."""

    id: str
    text: str


@dataclass(frozen=True)
class PairwiseRecord:
    """A query with one relevant and one non-relevant document."""

    query: Text
    positive: Text
    negative: Text

    @property
    def negatives(self) -> tuple[Text, ...]:
        return (self.negative,)


@dataclass(frozen=True)
class BatchwiseRecord:
    """A query with one relevant document and several non-relevant ones."""

    query: Text
    positive: Text
    negatives: tuple[Text, ...]


@dataclass(frozen=True)
class DistillationRecord:
    """A query, its positive and negatives, and a teacher's score of each (positive first)."""

    query: Text
    positive: Text
    negatives: tuple[Text, ...]
    teacher_scores: tuple[float, ...]


@dataclass(frozen=True)
class PointwiseRecord:
    """A query, one document and its label (1.0 relevant, 0.0 not)."""

    query: Text
    document: Text
    label: float
