"""Documents read from disk on demand, for collections larger than memory: one pass over a
BEIR corpus.jsonl keeps each document's id and byte offset (an offset index), never its text;
a text is read when it is asked for, and encoding streams them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from xpretrieval.data.records import check_id
from xpretrieval.errors import DataError


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
    if isinstance(documents, OnDiskDocuments):
        return documents.ids()
    return list(documents)


def document_texts(documents: Mapping[str, str]) -> Sequence[str]:
    """The texts of `documents` in its order: read as they are used when on disk."""
    if isinstance(documents, OnDiskDocuments):
        return documents.texts()
    return list(documents.values())


class OnDiskDocuments(Mapping[str, str]):
    """id -> text of a corpus.jsonl, in file order, holding in memory only each document's
    byte offset and id, as NumPy arrays (about 2 x the id's length + 12 bytes a document),
    never its text."""

    CHUNK = 100_000  # ids gathered as Python strings at most this many at a time

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.empty: list[str] = []  # ids of documents without text
        starts, ids = [], []
        pending_starts: list[int] = []
        pending_ids: list[bytes] = []
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
                pending_starts.append(start)
                pending_ids.append(doc_id.encode("utf-8"))
                if len(pending_ids) == self.CHUNK:
                    starts.append(np.asarray(pending_starts, dtype=np.int64))
                    ids.append(np.asarray(pending_ids))
                    pending_starts, pending_ids = [], []
        starts.append(np.asarray(pending_starts, dtype=np.int64))
        ids.append(np.asarray(pending_ids) if pending_ids else np.empty(0, dtype="S1"))
        self._starts = np.concatenate(starts)
        self._ids = np.concatenate(ids)  # by file row
        self._order = np.argsort(self._ids, kind="stable").astype(np.int64)
        self._sorted = self._ids[self._order]
        repeated = np.flatnonzero(self._sorted[1:] == self._sorted[:-1])
        if len(repeated):
            row = int(self._order[repeated[0] + 1])
            doc_id = self.id_at(row)
            raise DataError(f"{self.path}:{self._line_of(row)}: duplicate id {doc_id!r}")
        self._handle: IO[bytes] | None = None

    def _row(self, doc_id: object) -> int | None:
        if not isinstance(doc_id, str):
            return None
        key = doc_id.encode("utf-8")
        at = int(np.searchsorted(self._sorted, key))
        if at < len(self._sorted) and self._sorted[at] == key:
            return int(self._order[at])
        return None

    def _line_of(self, row: int) -> int:
        """The line number of the row-th document (blank lines counted), for error messages."""
        remaining, newlines = int(self._starts[row]), 0
        with self.path.open("rb") as handle:
            while remaining:
                block = handle.read(min(remaining, 2**20))
                newlines += block.count(b"\n")
                remaining -= len(block)
        return newlines + 1

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
        """Every id, by position (file order), decoded when asked for."""
        return _ByRow(self, OnDiskDocuments.id_at)

    def text_at(self, row: int) -> str:
        """The text of the row-th document (file order)."""
        if self._handle is None:
            self._handle = self.path.open("rb")
        self._handle.seek(int(self._starts[row]))
        line = self._handle.readline().decode("utf-8")
        return parse_text_line(line, f"{self.path}, document {row + 1}", with_title=True)[1]

    def texts(self) -> Sequence[str]:
        """Every text, by position, read on demand (what encoding consumes)."""
        return _Texts(self)

    def __getstate__(self) -> dict[str, Any]:  # worker processes open their own handle
        return {**self.__dict__, "_handle": None}


class _ByRow(Sequence[str]):
    """A Sequence view of `documents`: item i is `read(documents, i)`, read when asked for."""

    def __init__(self, documents: OnDiskDocuments, read: Callable[[OnDiskDocuments, int], str]):
        self.documents, self.read = documents, read

    def __len__(self) -> int:
        return len(self.documents)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.read(self.documents, i) for i in range(*index.indices(len(self)))]
        return self.read(self.documents, index if index >= 0 else index + len(self))


class _Texts(_ByRow):
    """The texts by row; iterating reads the file sequentially rather than seeking."""

    def __init__(self, documents: OnDiskDocuments) -> None:
        super().__init__(documents, OnDiskDocuments.text_at)

    def __iter__(self) -> Iterator[str]:
        with self.documents.path.open("rb") as handle:  # sequential: no seek per document
            for line_no, raw in enumerate(handle, start=1):
                line = raw.decode("utf-8").strip()
                if line:
                    yield parse_text_line(line, f"{self.documents.path}:{line_no}", True)[1]
