"""Long documents as passages: a split's documents cut into windows of words, each encoded and
searched alone, each document then scored from its passages' scores (MaxP, FirstP, SumP: Dai and
Callan 2019), so that text past a model's `doc_max_length` still counts.

Windows count whitespace-separated words, not a tokenizer's tokens: every model reads the same
windows (runs, saved indexes and experiments compare across models), cutting them needs no
tokenizer, and it is the unit of the MaxP papers (windows of 150 words, stride 75). A word is at
least one token, so a window of `length` words can fit `doc_max_length` tokens only if `length`
is at most that (checked when configured); how many windows are still cut is reported.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from xpretrieval.core.checks import check_range
from xpretrieval.core.progress import progress
from xpretrieval.data.documents import LazyDocuments, document_ids, document_texts

SEPARATOR = " "  # between a passage id's document id and window number (ids have no spaces)


class Aggregate(Enum):
    """How a document's score follows from its passages' scores."""

    max = "max"  # MaxP: its best passage's score
    first = "first"  # FirstP: its first passage's score (only first windows are encoded)
    sum = "sum"  # SumP: the sum of its passages' scores (in a search: of those retrieved)

    def combine(self, a: float, b: float) -> float:
        """Two passage scores of one document, combined (with `first` a document has one)."""
        return a + b if self is Aggregate.sum else max(a, b)


class PositivePassage(Enum):
    """Which passage of a positive document training reads (a training split's setting)."""

    first = "first"  # its first window: FirstP training (Dai and Callan 2019)
    best = "best"  # the window that the model being trained scores highest for the query, at
    # each step (MaxP training); negatives are read as their first window either way


@dataclass
class Passages:
    """A split's documents cut into windows of `length` words, `stride` words apart, for
    encoding and search; the run still ranks documents, scored by `aggregate` over their
    passages' scores. Off while `length` is null."""

    length: int | None = None  # words per window; null: documents are read whole (off)
    # words from a window's start to the next one's (length - stride words overlap); null:
    # length (windows side by side)
    stride: int | None = None
    aggregate: Aggregate = Aggregate.max  # a document's score: max, first or sum of its passages'
    # training split: the passage of each positive document trained on, first or best (the
    # one the model being trained scores highest, at each step)
    positive: PositivePassage = PositivePassage.first

    def __post_init__(self) -> None:
        check_range("length", self.length, at_least=1, optional=True)
        if self.length is None:
            defaults = {
                "stride": None,
                "aggregate": Aggregate.max,
                "positive": PositivePassage.first,
            }
            changed = [name for name, value in defaults.items() if getattr(self, name) != value]
            if changed:
                raise ValueError(
                    f"{changed[0]} applies to windows, which are off while length is null; set "
                    "length too (e.g. length=128 stride=64)"
                )
            return
        check_range("stride", self.stride, at_least=1, at_most=self.length, optional=True)

    @property
    def enabled(self) -> bool:
        return self.length is not None

    @property
    def step(self) -> int:
        """Words from one window's start to the next one's."""
        assert self.length is not None, "windows are off"
        return self.length if self.stride is None else self.stride

    def describe(self) -> str:
        """In words, for logs: `windows of 128 words, 64 apart, scored by max`."""
        return (
            f"windows of {self.length} words, {self.step} apart, scored by {self.aggregate.value}"
        )

    def counts(self, words: np.ndarray) -> np.ndarray:
        """Windows of documents of `words` words each: enough, `step` apart, for the last to
        reach the last word (one for an empty document; one each with `aggregate=first`)."""
        if self.aggregate is Aggregate.first:
            return np.ones_like(words)
        return self.every_count(words)

    def every_count(self, words: Any) -> Any:
        """All the windows of documents of `words` words (an int or an array), whatever
        `aggregate`."""
        assert self.length is not None, "windows are off"
        return 1 + (np.maximum(words - self.length, 0) + self.step - 1) // self.step

    def fits(self, words: int) -> bool:
        """Whether a text of `words` words fits one window: it is then read whole, as written."""
        return words <= (self.length or 0)

    def window(self, text: str, index: int) -> str:
        """The `index`-th window of `text`: the text itself when it fits one."""
        return self.window_of(text, text.split(), index)

    def window_of(self, text: str, words: list[str], index: int) -> str:
        """`window`, from the text's `words` already split."""
        return text if self.fits(len(words)) else self.cut(words, index)

    def every_window(self, text: str) -> list[str]:
        """All the windows of `text` (whatever `aggregate`): the text itself when it fits one."""
        words = text.split()
        if self.fits(len(words)):
            return [text]
        return [self.cut(words, index) for index in range(int(self.every_count(len(words))))]

    def cut(self, words: list[str], index: int) -> str:
        """The `index`-th window of a text longer than a window, from its `words`."""
        assert self.length is not None, "windows are off"
        start = index * self.step
        return " ".join(words[start : start + self.length])

    def windows(self, documents: Mapping[str, str]) -> PassageWindows:
        """The passages of `documents`, as documents (one pass over them counts their words)."""
        return PassageWindows(documents, self)


class PassageWindows(LazyDocuments):
    """The passages of a collection's documents, as documents themselves: passage id -> window
    text, in document order, a window's text cut when it is read. A passage id is `<document
    id> <window number>`: a space apart, so it is never a document id (those have no space),
    and never one of a run's. Holds two integers a document; a few documents' words are kept,
    for windows read out of order (encoding reads them longest first)."""

    CACHED = 64  # documents whose split words are kept

    def __init__(self, documents: Mapping[str, str], passages: Passages) -> None:
        assert passages.length is not None, "windows are off"
        self.documents, self.passages = documents, passages
        self.doc_ids = document_ids(documents)
        self.doc_texts = document_texts(documents)
        counted = progress(self.doc_texts, "count words", len(self.doc_texts), "document")
        self.words = np.fromiter((len(t.split()) for t in counted), np.int64, len(self.doc_texts))
        self.offsets = np.zeros(len(self.doc_texts) + 1, dtype=np.int64)
        np.cumsum(passages.counts(self.words), out=self.offsets[1:])
        self._cache: OrderedDict[int, list[str]] = OrderedDict()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def document_count(self) -> int:
        return len(self.doc_texts)

    def document_rows(self, rows: np.ndarray) -> np.ndarray:
        """The document row of each passage row (-1 stays -1: no passage)."""
        found = np.searchsorted(self.offsets, rows, side="right") - 1
        return np.where(rows >= 0, found, -1)

    def document_of(self, passage_id: str) -> str:
        """The id of the document a passage id names."""
        return passage_id.rsplit(SEPARATOR, 1)[0]

    def passage_ids(self, doc_id: str) -> list[str]:
        """The passage ids of one document (read to count its words)."""
        count = self._count(self.documents[doc_id])
        return [f"{doc_id}{SEPARATOR}{index}" for index in range(count)]

    def _count(self, text: str) -> int:
        """How many windows `text` has."""
        return int(self.passages.counts(np.int64(len(text.split()))))

    def locate(self, row: int) -> tuple[int, int]:
        """(document row, window number) of the row-th passage."""
        doc = int(np.searchsorted(self.offsets, row, side="right")) - 1
        return doc, row - int(self.offsets[doc])

    def text_at(self, row: int) -> str:
        """The row-th passage's text."""
        doc, index = self.locate(row)
        if self.passages.fits(int(self.words[doc])):
            return self.doc_texts[doc]
        return self.passages.cut(self._words(doc), index)

    def first_windows(self, n: int) -> list[str]:
        """The first windows of the first `n` documents of at least a window's words: full
        windows, to check how many of them a model cuts."""
        rows = np.flatnonzero(self.words >= self.passages.length)[:n]
        return [self.passages.cut(self._words(int(row)), 0) for row in rows]

    def _words(self, doc: int) -> list[str]:
        """The words of the doc-th document, from the cache of recently read ones."""
        if doc in self._cache:
            self._cache.move_to_end(doc)
            return self._cache[doc]
        words = self._cache[doc] = self.doc_texts[doc].split()
        if len(self._cache) > self.CACHED:
            self._cache.popitem(last=False)
        return words

    def __getitem__(self, passage_id: str) -> str:
        doc_id, _, number = passage_id.rpartition(SEPARATOR)
        if not number.isdigit() or doc_id not in self.documents:
            raise KeyError(passage_id)
        text = self.documents[doc_id]
        words = text.split()
        if int(number) >= int(self.passages.counts(np.int64(len(words)))):
            raise KeyError(passage_id)
        return self.passages.window_of(text, words, int(number))

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def ids(self) -> Sequence[str]:
        return _PassageIds(self)

    def texts(self) -> Sequence[str]:
        return _PassageTexts(self)


class _PassageTexts(Sequence[str]):
    """The passages' texts by row; iterating reads the documents in order, each split once."""

    def __init__(self, windows: PassageWindows) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._at(index if index >= 0 else index + len(self))

    def _at(self, row: int) -> str:
        return self.windows.text_at(row)

    def __iter__(self) -> Iterator[str]:
        windows = self.windows
        for doc, text in enumerate(windows.doc_texts):
            if windows.passages.fits(int(windows.words[doc])):
                yield text
                continue
            words = text.split()
            for index in range(int(windows.offsets[doc + 1] - windows.offsets[doc])):
                yield windows.passages.cut(words, index)


class _PassageIds(_PassageTexts):
    """The passage ids by row (`<document id> <window number>`)."""

    def _at(self, row: int) -> str:
        doc, number = self.windows.locate(row)
        return f"{self.windows.doc_ids[doc]}{SEPARATOR}{number}"

    def __iter__(self) -> Iterator[str]:
        windows = self.windows
        for doc, doc_id in enumerate(windows.doc_ids):
            for index in range(int(windows.offsets[doc + 1] - windows.offsets[doc])):
                yield f"{doc_id}{SEPARATOR}{index}"
