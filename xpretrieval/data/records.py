"""Training records: plain typed values that samplers yield and trainers consume. Their type
says what they carry (negatives of their own, a teacher's scores, a label), which is how a
config's sampler, trainer and losses are checked to fit together."""

from __future__ import annotations

from dataclasses import dataclass

from xpretrieval.core.errors import DataError

Qrels = dict[str, dict[str, int]]
"""query id -> document id -> relevance grade."""


def check_id(item_id: str, where: str) -> str:
    """`item_id`, or a `DataError` at `where` if TREC run and qrels files could not carry it
    (they separate fields by whitespace): a run written with it could not be read back."""
    if not item_id or any(character.isspace() for character in item_id):
        raise DataError(
            f"{where}: id {item_id!r} is empty or contains whitespace, which TREC run and "
            "qrels files cannot carry; give the collection ids without spaces"
        )
    return item_id


@dataclass(frozen=True)
class Text:
    """A query or a document: its id and its text."""

    id: str
    text: str


@dataclass(frozen=True)
class PositiveRecord:
    """A query and one relevant document, without negatives of its own (in-batch only)."""

    query: Text
    positive: Text

    @property
    def negatives(self) -> tuple[Text, ...]:
        return ()


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


# records that bring negatives of their own (the others rely on in-batch negatives)
WITH_NEGATIVES: tuple[type, ...] = (PairwiseRecord, BatchwiseRecord, DistillationRecord)
