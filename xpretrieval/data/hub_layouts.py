"""The published layouts of retrieval training sets on the Hugging Face Hub, recognised from
their columns (or named by an explicit column mapping), each turning a row into an `Example`:

- sentence-transformers: `anchor` (or `query`), `positive`, `negative` or `negative_1` ..
  `negative_n`, and a teacher's `label` (or `score`) as its `MarginMSELoss` reads one: a margin
  score(positive) - score(negative) for a single negative, a list of n margins, or a list of
  1 + n scores (the positive's first);
- tevatron: `query_id`, `query`, `positive_passages`, `negative_passages`, each passage a
  `{docid, title, text}` dict;
- ids with a teacher's scores (pylate's `ms-marco-en-bge`): `query_id`, `document_ids`,
  `scores`, with the texts in separate query (`query_id`, `text`) and document (`document_id`,
  `text`) sets; the best-scored document is the positive, the others the negatives;
- id triplets (sentence-transformers' `msmarco`: its `triplets` and `bert-ensemble-margin-mse`
  subsets): `query_id`, `positive_id`, `negative_id` and an optional margin `score`, with the
  texts in separate query (`query_id`, `query`) and passage (`passage_id`, `passage`) sets.

Texts without ids (sentence-transformers') get a stable one: a hash of the text.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from xpretrieval.core.errors import DataError
from xpretrieval.data.examples import Example
from xpretrieval.data.records import Text

QUERY_COLUMNS = ("anchor", "query")  # sentence-transformers' names of the query column
SCORE_COLUMNS = ("label", "score")
TEVATRON = ("query_id", "query", "positive_passages", "negative_passages")
IDS_WITH_SCORES = ("query_id", "document_ids", "scores")
ID_TRIPLETS = ("query_id", "positive_id", "negative_id")
NUMBERED_NEGATIVE = re.compile(r"negative_(\d+)")
EXPECTED = (
    "sentence-transformers (anchor or query, positive, negative or negative_1..n, optional "
    "label or score), tevatron (query_id, query, positive_passages, negative_passages), ids "
    "with scores (query_id, document_ids, scores, with hf_queries and hf_documents) or id "
    "triplets (query_id, positive_id, negative_id, optional score, with hf_queries and "
    "hf_documents)"
)


@dataclass
class ColumnMapping:
    """The columns of each role in a dataset of any other layout (`dataset.train.hf_columns=
    {query: question, positive: answer, negatives: [wrong]}`); unset: the layout is recognised
    from the column names."""

    query: str | None = None  # the query's text
    positive: str | None = None  # the relevant document's text (or a list of texts)
    negatives: list[str] = field(default_factory=list)  # each a text or a list of texts
    score: str | None = None  # a teacher's margin(s) or scores, as sentence-transformers' label

    def __post_init__(self) -> None:
        if self.given and (self.query is None or self.positive is None):
            raise ValueError(
                f"hf_columns needs the query and positive columns, got query={self.query!r}, "
                f"positive={self.positive!r}"
            )

    @property
    def given(self) -> bool:
        """Whether any column is named (the layout is then this mapping's)."""
        return any(getattr(self, item.name) for item in fields(self))


Texts = tuple[Mapping[str, str], Mapping[str, str]]
"""(query id -> text, document id -> text), the separate sets of a layout of ids."""


@dataclass(frozen=True)
class TextSet:
    """Where a layout of ids keeps one kind of text: a subset of the same Hub dataset (or the
    file `setting` names), with its id and text columns."""

    setting: str  # hf_queries or hf_documents
    subset: str
    id_column: str
    text_column: str


# pylate's sets (lightonai/ms-marco-en-bge), sentence-transformers' (sentence-transformers/msmarco)
PYLATE_TEXTS = (
    TextSet("hf_queries", "queries", "query_id", "text"),
    TextSet("hf_documents", "documents", "document_id", "text"),
)
SENTENCE_TRANSFORMERS_TEXTS = (
    TextSet("hf_queries", "queries", "query_id", "query"),
    TextSet("hf_documents", "corpus", "passage_id", "passage"),
)


def text_id(text: str) -> str:
    """A stable id for a text that has none: the same text, the same id, in every process."""
    return "h" + hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


class Layout(ABC):
    """How a dataset's rows hold queries, documents and scores."""

    @property
    def has_scores(self) -> bool:
        """Whether every example carries a teacher's scores."""
        return False

    @abstractmethod
    def read(self, row: Mapping[str, Any], where: str) -> Example:
        """The example of one row; `where` (dataset, row) names it in errors."""


def recognise(
    columns: Sequence[str],
    where: str,
    mapping: ColumnMapping,
    load_texts: Callable[[tuple[TextSet, TextSet]], Texts],
) -> Layout:
    """The layout of a dataset with `columns`: `mapping`'s when given, else the published
    layout the columns match; `load_texts` reads the separate query and document sets that
    the layouts of ids need."""
    found = set(columns)
    if mapping.given:
        return _mapped(mapping, found, where)
    if found.issuperset(TEVATRON):
        return Tevatron()
    if found.issuperset(IDS_WITH_SCORES):
        return IdsWithScores(*load_texts(PYLATE_TEXTS))
    score = next((name for name in SCORE_COLUMNS if name in found), None)
    query = next((name for name in QUERY_COLUMNS if name in found), None)
    if query is not None and "positive" in found:  # texts, even beside ids
        numbered = sorted(
            (int(match[1]), name)
            for name in columns
            if (match := NUMBERED_NEGATIVE.fullmatch(name)) is not None
        )
        negatives = (*(["negative"] if "negative" in found else []), *(n for _, n in numbered))
        return TextColumns(query, "positive", negatives, score)
    if found.issuperset(ID_TRIPLETS):
        return IdTriplets(*load_texts(SENTENCE_TRANSFORMERS_TEXTS), score)
    raise DataError(
        f"{where}: columns {', '.join(columns)} match no known layout ({EXPECTED}); name them "
        "with dataset.train.hf_columns={query: ..., positive: ..., negatives: [...], score: ...}"
    )


def _mapped(mapping: ColumnMapping, found: set[str], where: str) -> TextColumns:
    """The columns `mapping` names for each role, all of which the dataset must have."""
    assert mapping.query is not None and mapping.positive is not None
    named = [mapping.query, mapping.positive, *mapping.negatives, mapping.score]
    missing = [name for name in named if name is not None and name not in found]
    if missing:
        raise DataError(
            f"dataset.train.hf_columns: {where} has no column {', '.join(map(repr, missing))} "
            f"(its columns: {', '.join(sorted(found))})"
        )
    return TextColumns(mapping.query, mapping.positive, tuple(mapping.negatives), mapping.score)


@dataclass(frozen=True)
class TextColumns(Layout):
    """Texts in columns (sentence-transformers' layout, or any mapped one): a query, its
    positive(s), its negatives (a column each, or lists of texts) and optional scores."""

    query: str
    positive: str
    negatives: tuple[str, ...]
    score: str | None

    @property
    def has_scores(self) -> bool:
        return self.score is not None

    def read(self, row: Mapping[str, Any], where: str) -> Example:
        query = _text(row[self.query], f"{where}, column {self.query}")
        positives = _texts(row[self.positive], f"{where}, column {self.positive}")
        if not positives:
            raise DataError(f"{where}: column {self.positive} holds no positive text")
        negatives = [
            text
            for column in self.negatives
            for text in _texts(row[column], f"{where}, column {column}", optional=True)
        ]
        scores = None
        if self.score is not None:
            if len(positives) != 1:
                raise DataError(f"{where}: teacher scores need one positive, got {len(positives)}")
            scores = teacher_scores(row[self.score], len(negatives), f"{where}, {self.score}")
        return Example(
            Text(text_id(query), query),
            tuple(Text(text_id(text), text) for text in positives),
            tuple(Text(text_id(text), text) for text in negatives),
            scores,
        )


def teacher_scores(value: Any, negatives: int, where: str) -> tuple[float, ...]:
    """The scores (positive first) that sentence-transformers' `label` stands for: 1 + n
    scores as they are; n margins score(positive) - score(negative_i), or one margin for one
    negative, as (0, -margin_1, ..., -margin_n): the margins MarginMSE compares and the
    softmax KL distillation takes are the same."""
    values = [value] if isinstance(value, (int, float)) else value
    if not isinstance(values, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise DataError(f"{where}: expected a number or a list of numbers, got {value!r}")
    if len(values) == negatives + 1:
        return tuple(float(v) for v in values)
    if len(values) == negatives and negatives:
        return (0.0, *(-float(v) for v in values))
    raise DataError(
        f"{where}: {len(values)} scores for 1 positive and {negatives} negatives; expected "
        f"{negatives + 1} scores (the positive's first) or {negatives} margins"
    )


@dataclass(frozen=True)
class Tevatron(Layout):
    """tevatron's rows: a query with lists of positive and negative passage dicts."""

    def read(self, row: Mapping[str, Any], where: str) -> Example:
        query = _text(row["query"], f"{where}, column query")
        positives = _passages(row["positive_passages"], f"{where}, positive_passages")
        if not positives:
            raise DataError(f"{where}: positive_passages is empty")
        negatives = _passages(row["negative_passages"], f"{where}, negative_passages")
        return Example(Text(str(row["query_id"]), query), positives, negatives)


def _passages(value: Any, where: str) -> tuple[Text, ...]:
    """Passages `{docid, title, text}` as texts, the title before the text (as BEIR's are)."""
    if not isinstance(value, list):
        raise DataError(f"{where}: expected a list of passages, got {type(value).__name__}")
    passages = []
    for passage in value:
        if not isinstance(passage, Mapping) or not isinstance(passage.get("text"), str):
            raise DataError(f'{where}: expected passages {{"docid", "title", "text"}}')
        title = passage.get("title")
        text = f"{title} {passage['text']}".strip() if title else passage["text"]
        docid = passage.get("docid")
        passages.append(Text(text_id(text) if docid is None else str(docid), text))
    return tuple(passages)


@dataclass(frozen=True, eq=False)  # eq=False: never compare millions of texts
class IdsWithScores(Layout):
    """pylate's distillation rows: a query id, candidate document ids and the teacher's score
    of each; the texts come from the separate sets."""

    queries: Mapping[str, str]
    documents: Mapping[str, str]

    @property
    def has_scores(self) -> bool:
        return True

    def read(self, row: Mapping[str, Any], where: str) -> Example:
        ids, scores = row["document_ids"], row["scores"]
        if not isinstance(ids, list) or not isinstance(scores, list) or len(ids) != len(scores):
            raise DataError(
                f"{where}: document_ids and scores must be lists of the same length, got "
                f"{_length(ids)} document_ids and {_length(scores)} scores"
            )
        if len(ids) < 2:
            raise DataError(f"{where}: {len(ids)} document ids; a positive and a negative needed")
        query = lookup(self.queries, row["query_id"], f"{where}, query_id", "queries")
        texts = [lookup(self.documents, i, f"{where}, document_ids", "documents") for i in ids]
        best = max(range(len(ids)), key=lambda i: scores[i])  # the first of equal scores
        rest = [i for i in range(len(ids)) if i != best]
        return Example(
            query,
            (texts[best],),
            tuple(texts[i] for i in rest),
            (float(scores[best]), *(float(scores[i]) for i in rest)),
        )


@dataclass(frozen=True, eq=False)
class IdTriplets(Layout):
    """sentence-transformers' rows of ids: a query, its positive and one negative, with the
    teacher's margin score(positive) - score(negative) when a `score` column holds it."""

    queries: Mapping[str, str]
    documents: Mapping[str, str]
    score: str | None

    @property
    def has_scores(self) -> bool:
        return self.score is not None

    def read(self, row: Mapping[str, Any], where: str) -> Example:
        query = lookup(self.queries, row["query_id"], f"{where}, query_id", "queries")
        positive, negative = (
            lookup(self.documents, row[column], f"{where}, {column}", "passages")
            for column in ("positive_id", "negative_id")
        )
        scores = None
        if self.score is not None:
            scores = teacher_scores(row[self.score], 1, f"{where}, {self.score}")
        return Example(query, (positive,), (negative,), scores)


def id_key(value: Any, where: str) -> str:
    """An id cell as the string ids are matched by: a null id (None, NaN) is refused, a whole
    float (what pandas makes of an integer column with nulls) read as the integer it holds."""
    if value is None or isinstance(value, bool) or value != value:  # NaN: pandas' null
        raise DataError(f"{where}: expected an id, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def lookup(texts: Mapping[str, str], value: Any, where: str, kind: str) -> Text:
    """The text of the id in a cell of a layout of ids (read by `id_key`)."""
    key = id_key(value, where)
    if key not in texts:
        raise DataError(f"{where}: id {key!r} is not in the {kind} set")
    return Text(key, _text(texts[key], f"{where}, the text of {key!r}"))


def _length(value: Any) -> str:
    return str(len(value)) if isinstance(value, list) else f"no list ({type(value).__name__})"


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: expected a non-empty text, got {value!r}")
    return value


def _texts(value: Any, where: str, optional: bool = False) -> list[str]:
    """A cell holding a text or a list of texts; `optional`: an empty or null cell is none."""
    if optional and (value is None or value == ""):
        return []
    values = value if isinstance(value, list) else [value]
    return [_text(text, where) for text in values]
