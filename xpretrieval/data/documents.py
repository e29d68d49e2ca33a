"""Documents read from disk on demand, for collections larger than memory: one pass over a
BEIR corpus.jsonl keeps each document's id and byte offset (an offset index), never its text;
a text is read when it is asked for, and encoding streams them."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
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


def document_texts(documents: Mapping[str, str]) -> Sequence[str]:
    """The texts of `documents` in its order: read as they are used when on disk."""
    if isinstance(documents, OnDiskDocuments):
        return documents.texts()
    return list(documents.values())


class OnDiskDocuments(Mapping[str, str]):
    """id -> text of a corpus.jsonl, in file order, holding ids and offsets only (about 100
    bytes a document, against the texts themselves in memory)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._offsets: list[int] = []
        self._rows: dict[str, int] = {}
        self.empty: list[str] = []  # ids of documents without text
        with self.path.open("rb") as handle:
            offset = 0
            for line_no, raw in enumerate(handle, start=1):
                start, offset = offset, offset + len(raw)
                line = raw.decode("utf-8").strip()
                if not line:
                    continue
                doc_id, text = parse_text_line(line, f"{self.path}:{line_no}", with_title=True)
                if doc_id in self._rows:
                    raise DataError(f"{self.path}:{line_no}: duplicate id {doc_id!r}")
                if not text.strip():
                    self.empty.append(doc_id)
                self._rows[doc_id] = len(self._offsets)
                self._offsets.append(start)
        self._starts = np.asarray(self._offsets, dtype=np.int64)
        del self._offsets
        self._handle: IO[bytes] | None = None

    def __getitem__(self, doc_id: str) -> str:
        return self.text_at(self._rows[doc_id])

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._rows

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


class _Texts(Sequence[str]):
    def __init__(self, documents: OnDiskDocuments) -> None:
        self.documents = documents

    def __len__(self) -> int:
        return len(self.documents)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.documents.text_at(i) for i in range(*index.indices(len(self)))]
        return self.documents.text_at(index if index >= 0 else index + len(self))

    def __iter__(self) -> Iterator[str]:
        with self.documents.path.open("rb") as handle:  # sequential: no seek per document
            for line_no, raw in enumerate(handle, start=1):
                line = raw.decode("utf-8").strip()
                if line:
                    yield parse_text_line(line, f"{self.documents.path}:{line_no}", True)[1]
