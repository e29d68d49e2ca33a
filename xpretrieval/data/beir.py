"""Read a collection from a BEIR-layout folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from xpretrieval.data.collection import Collection, Qrels
from xpretrieval.errors import DataError


def load_beir_folder(folder: str | Path, split: str) -> Collection:
    """Load the documents, queries and `split` qrels of a BEIR folder (as in the BEIR zips)."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"BEIR folder {root} does not exist or is not a folder")
    paths = {"corpus": root / "corpus.jsonl", "queries": root / "queries.jsonl"}
    paths["qrels"] = root / "qrels" / f"{split}.tsv"
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise DataError(
            f"BEIR folder {root} lacks {', '.join(missing)} "
            "(expected corpus.jsonl, queries.jsonl and qrels/<split>.tsv)"
        )
    documents = _read_texts(paths["corpus"], with_title=True)
    queries = _read_texts(paths["queries"], with_title=False)
    qrels = read_qrels_tsv(paths["qrels"])
    return Collection.checked(f"{root.name}/{split}", documents, queries, qrels)


def _read_texts(path: Path, with_title: bool) -> dict[str, str]:
    """id -> text from a JSON-lines file of `{"_id", "text"[, "title"]}` objects."""
    texts: dict[str, str] = {}
    for line_no, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{line_no}: invalid JSON ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("_id"), (str, int)):
            raise DataError(f'{path}:{line_no}: expected an object with an "_id"')
        text = record.get("text")
        if not isinstance(text, str):
            raise DataError(f'{path}:{line_no}: expected a string "text" field')
        title = record.get("title") if with_title else None
        item_id = str(record["_id"])
        if item_id in texts:
            raise DataError(f"{path}:{line_no}: duplicate id {item_id!r}")
        texts[item_id] = f"{title} {text}".strip() if isinstance(title, str) and title else text
    return texts


def read_qrels_tsv(path: str | Path) -> Qrels:
    """Read BEIR qrels: `query-id <tab> corpus-id <tab> score`, with an optional header line."""
    path = Path(path)
    qrels: Qrels = {}
    for line_no, line in _lines(path):
        fields = line.split("\t")
        if line_no == 1 and fields[0] == "query-id":
            continue
        if len(fields) != 3:
            raise DataError(
                f"{path}:{line_no}: expected 3 tab-separated fields "
                f"(query-id, corpus-id, score), got {len(fields)}"
            )
        query_id, doc_id, score = fields
        try:
            grade = int(score)
        except ValueError:
            raise DataError(
                f"{path}:{line_no}: relevance score must be an integer, got {score!r}"
            ) from None
        qrels.setdefault(query_id, {})[doc_id] = grade
    if not qrels:
        raise DataError(f"{path}: no relevance judgements")
    return qrels


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-empty lines without their end-of-line (`\\n` or `\\r\\n`), numbered from 1."""
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise DataError(f"{path}:{line_no}: not valid UTF-8 ({error.reason})") from None
            if line.strip():
                yield line_no, line
