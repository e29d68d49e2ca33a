"""Read a collection from a BEIR-layout folder: corpus.jsonl, queries.jsonl, `qrels/<split>.tsv`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from xpretrieval.core.errors import DataError
from xpretrieval.core.io import numbered_lines
from xpretrieval.data.documents import JsonlDocuments, parse_text_line
from xpretrieval.data.records import Qrels, check_id

logger = logging.getLogger(__name__)


def read_beir_folder(
    folder: str | Path, split: str, on_disk: bool = False
) -> tuple[str, Mapping[str, str], dict[str, str], Qrels]:
    """The name, documents, queries and `split` qrels of a BEIR folder (as in the BEIR zips);
    `Collection.from_beir` checks them into a collection. `on_disk`: documents are read from
    corpus.jsonl when needed (an offset index), not held in memory."""
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
    if on_disk:
        documents: Mapping[str, str] = JsonlDocuments(paths["corpus"])
        empty = documents.empty
    else:
        documents = _read_texts(paths["corpus"], with_title=True)
        empty = [doc_id for doc_id, text in documents.items() if not text.strip()]
    queries = _read_texts(paths["queries"], with_title=False)
    if empty:  # real corpora have some; they stay, and can only be ranked by chance
        logger.warning(
            "%s: %d documents have no text (e.g. %s)", paths["corpus"], len(empty), empty[0]
        )
    return f"{root.name}/{split}", documents, queries, read_qrels_tsv(paths["qrels"])


def _read_texts(path: Path, with_title: bool) -> dict[str, str]:
    """id -> text from a JSON-lines file of `{"_id", "text"[, "title"]}` objects."""
    texts: dict[str, str] = {}
    for line_no, line in numbered_lines(path):
        item_id, text = parse_text_line(line, f"{path}:{line_no}", with_title)
        if not with_title and not text.strip():
            raise DataError(f"{path}:{line_no}: query {item_id!r} has an empty text")
        if item_id in texts:
            raise DataError(f"{path}:{line_no}: duplicate id {item_id!r}")
        texts[item_id] = text
    return texts


def read_qrels_tsv(path: str | Path) -> Qrels:
    """Read BEIR qrels: `query-id <tab> corpus-id <tab> score`, with an optional header line.
    A (query, document) judged twice is refused: which grade was meant cannot be known."""
    path = Path(path)
    qrels: Qrels = {}
    first_line: dict[tuple[str, str], int] = {}
    for line_no, line in numbered_lines(path):
        fields = line.split("\t")
        if line_no == 1 and fields[0] == "query-id":
            continue
        if len(fields) != 3:
            raise DataError(
                f"{path}:{line_no}: expected 3 tab-separated fields "
                f"(query-id, corpus-id, score), got {len(fields)}"
            )
        query_id, doc_id, score = fields
        for item_id in (query_id, doc_id):
            check_id(item_id, f"{path}:{line_no}")
        try:
            grade = int(score)
        except ValueError:
            raise DataError(
                f"{path}:{line_no}: relevance score must be an integer, got {score!r}"
            ) from None
        earlier = first_line.setdefault((query_id, doc_id), line_no)
        if earlier != line_no:
            raise DataError(
                f"{path}:{line_no}: query {query_id!r} and document {doc_id!r} are judged again "
                f"(first at line {earlier}, grade {qrels[query_id][doc_id]}; here {grade}); "
                "keep one judgement per pair"
            )
        qrels.setdefault(query_id, {})[doc_id] = grade
    if not qrels:
        raise DataError(f"{path}: no relevance judgements")
    return qrels
