"""Saved indexes: a folder with the index's files and a manifest naming what it indexes, so
that `evaluate` can search it without encoding the documents again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from xpretrieval.errors import ConfigError
from xpretrieval.io import atomic_directory
from xpretrieval.retrieval.index import IndexConfig, ScoreFn, SearchIndex

MANIFEST = "index.json"


def save_index(index: IndexConfig, searcher: SearchIndex, folder: Path, doc_ids: list[str]) -> None:
    """Write `searcher` and its manifest into `folder`, atomically."""
    with atomic_directory(folder) as tmp:
        searcher.save(tmp)
        manifest = {"index": type(index).__name__, "documents": len(doc_ids)}
        manifest["doc_ids_sha1"] = _fingerprint(doc_ids)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def open_index(index: IndexConfig, folder: Path, doc_ids: list[str], score: ScoreFn) -> SearchIndex:
    """The index saved in `folder`, after checking it indexes exactly these documents."""
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        raise ConfigError(f"index.load={str(folder)!r} has no {MANIFEST}: not a saved index")
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    if manifest["index"] != type(index).__name__:
        raise ConfigError(
            f"index.load={str(folder)!r} holds a {manifest['index']} index but the config's "
            f"index is {type(index).__name__}; choose the same index group"
        )
    if manifest["doc_ids_sha1"] != _fingerprint(doc_ids):
        raise ConfigError(
            f"index.load={str(folder)!r} indexes {manifest['documents']} other documents than "
            f"the test collection's {len(doc_ids)}; it was built for another collection"
        )
    return index.open(folder, score)


def _fingerprint(doc_ids: list[str]) -> str:
    return hashlib.sha1("\n".join(doc_ids).encode("utf-8")).hexdigest()
