"""Documents kept out of memory, for collections larger than it: each document's id is held
in a NumPy array (an id index), never its text; a text is read when it is asked for, and
encoding streams them. Two sources: an offset index over a BEIR corpus.jsonl
(`JsonlDocuments`, here) and ir-datasets' docstore (`DocstoreDocuments`, in `irds`)."""

from __future__ import annotations

import json
from abc import abstractmethod
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from xpretrieval.core.errors import DataError
from xpretrieval.data.records import check_id


def parse_text_line(line: str, where: str, with_title: bool) -> tuple[str, str]:
    """(id, text) of one JSON line `{"_id", "text"[, "title"]}`, the title before the text;
    errors name `where` (file:line)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: invalid JSON ({error.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("_id"), (str, int)):
        raise DataError(f'{where}: expected an object with an "_id"')
    text = record.get("text")
    if not isinstance(text, str):
        raise DataError(f'{where}: expected a string "text" field')
    title = record.get("title") if with_title else None
    item_id = check_id(str(record["_id"]), where)
    return item_id, f"{title} {text}".strip() if isinstance(title, str) and title else text


def document_ids(documents: Mapping[str, str]) -> Sequence[str]:
    """The ids of `documents` in its order: decoded as they are used when on disk."""
    if isinstance(documents, LazyDocuments):
        return documents.ids()
    return list(documents)


def document_texts(documents: Mapping[str, str]) -> Sequence[str]:
    """The texts of `documents` in its order: read as they are used when on disk."""
    if isinstance(documents, LazyDocuments):
        return documents.texts()
    return list(documents.values())


class LazyDocuments(Mapping[str, str]):
    """id -> text whose ids and texts are sequences read as they are used, never all held: the
    documents on disk, or the passage windows of a collection (`data.passages`)."""

    @abstractmethod
    def ids(self) -> Sequence[str]:
        """Every id, by position."""

    @abstractmethod
    def texts(self) -> Sequence[str]:
        """Every text, by position; iterating reads them in order."""


class OnDiskDocuments(LazyDocuments):
    """id -> text, in the source's order, holding in memory only the ids (a NumPy array of
    bytes, about 2 x the id's length a document): subclasses read a text by row, and every
    text in order."""

    CHUNK = 100_000  # ids gathered as Python bytes at most this many at a time

    def __init__(self, ids: Iterable[str], where: Callable[[int], str]) -> None:
        """Index `ids` (in source order); a repeated id is refused at `where(row)`."""
        chunks, pending = [], []
        for doc_id in ids:
            pending.append(doc_id.encode("utf-8"))
            if len(pending) == self.CHUNK:
                chunks.append(np.asarray(pending))
                pending = []
        chunks.append(np.asarray(pending) if pending else np.empty(0, dtype="S1"))
        self._ids = np.concatenate(chunks)  # by row
        self._order = np.argsort(self._ids, kind="stable").astype(np.int64)
        self._sorted = self._ids[self._order]
        repeated = np.flatnonzero(self._sorted[1:] == self._sorted[:-1])
        if len(repeated):
            row = int(self._order[repeated[0] + 1])
            raise DataError(f"{where(row)}: duplicate id {self.id_at(row)!r}")

    @abstractmethod
    def text_at(self, row: int) -> str:
        """The text of the row-th document."""

    @abstractmethod
    def iter_texts(self) -> Iterator[str]:
        """Every text in order, read sequentially (what encoding consumes)."""

    def _row(self, doc_id: object) -> int | None:
        if not isinstance(doc_id, str):
            return None
        key = doc_id.encode("utf-8")
        at = int(np.searchsorted(self._sorted, key))
        if at < len(self._sorted) and self._sorted[at] == key:
            return int(self._order[at])
        return None

    def __getitem__(self, doc_id: str) -> str:
        row = self._row(doc_id)
        if row is None:
            raise KeyError(doc_id)
        return self.text_at(row)

    def __iter__(self) -> Iterator[str]:
        return (self.id_at(row) for row in range(len(self)))

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, doc_id: object) -> bool:
        return self._row(doc_id) is not None

    def id_at(self, row: int) -> str:
        return self._ids[row].decode("utf-8")

    def ids(self) -> Sequence[str]:
        """Every id, by position, decoded when asked for."""
        return _ByRow(self, self.id_at)

    def texts(self) -> Sequence[str]:
        """Every text, by position, read on demand; iterating reads them in order."""
        return _Texts(self)


class JsonlDocuments(OnDiskDocuments):
    """The documents of a BEIR corpus.jsonl through an offset index: each document's byte
    offset (8 bytes) beside its id."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._starts = array("q")
        self.empty: list[str] = []  # ids of documents without text, noted while scanning
        super().__init__(self._scan(), lambda row: f"{self.path}:{self._line_of(row)}")
        self._handle: IO[bytes] | None = None

    def _scan(self) -> Iterator[str]:
        """Every id in file order, noting each line's offset and the documents without text."""
        with self.path.open("rb") as handle:
            offset = 0
            for line_no, raw in enumerate(handle, start=1):
                start, offset = offset, offset + len(raw)
                line = raw.decode("utf-8").strip()
                if not line:
                    continue
                doc_id, text = parse_text_line(line, f"{self.path}:{line_no}", with_title=True)
                if not text.strip():
                    self.empty.append(doc_id)
                self._starts.append(start)
                yield doc_id

    def _line_of(self, row: int) -> int:
        """The line number of the row-th document (blank lines counted), for error messages."""
        remaining, newlines = self._starts[row], 0
        with self.path.open("rb") as handle:
            while remaining:
                block = handle.read(min(remaining, 2**20))
                newlines += block.count(b"\n")
                remaining -= len(block)
        return newlines + 1

    def text_at(self, row: int) -> str:
        if self._handle is None:
            self._handle = self.path.open("rb")
        self._handle.seek(self._starts[row])
        line = self._handle.readline().decode("utf-8")
        return parse_text_line(line, f"{self.path}, document {row + 1}", with_title=True)[1]

    def iter_texts(self) -> Iterator[str]:
        with self.path.open("rb") as handle:  # sequential: no seek per document
            for line_no, raw in enumerate(handle, start=1):
                line = raw.decode("utf-8").strip()
                if line:
                    yield parse_text_line(line, f"{self.path}:{line_no}", True)[1]

    def __getstate__(self) -> dict[str, Any]:  # worker processes open their own handle
        return {**self.__dict__, "_handle": None}


class _ByRow(Sequence[str]):
    """A Sequence view of `documents`: item i is `read(i)`, read when asked for."""

    def __init__(self, documents: OnDiskDocuments, read: Callable[[int], str]):
        self.documents, self.read = documents, read

    def __len__(self) -> int:
        return len(self.documents)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.read(i) for i in range(*index.indices(len(self)))]
        return self.read(index if index >= 0 else index + len(self))


class _Texts(_ByRow):
    """The texts by row; iterating reads the source sequentially rather than row by row."""

    def __init__(self, documents: OnDiskDocuments) -> None:
        super().__init__(documents, documents.text_at)

    def __iter__(self) -> Iterator[str]:
        return self.documents.iter_texts()
