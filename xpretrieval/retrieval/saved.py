"""Saved indexes: a folder with the index's files and a manifest saying what produced it (the
model's kind, config and weights, and the documents' ids and texts), so that `evaluate` can
search it without encoding the documents again, and refuses to when anything differs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from xpretrieval.core.config import flatten
from xpretrieval.core.errors import ConfigError
from xpretrieval.core.io import atomic_directory
from xpretrieval.data.documents import document_texts
from xpretrieval.models.fingerprint import weights_fingerprint
from xpretrieval.retrieval.index import IndexConfig, ScoreFn, SearchIndex

MANIFEST = "index.json"
MANIFEST_VERSION = 2  # 1: document ids only, which let another model's index be searched


def index_provenance(model: Any, documents: dict[str, str]) -> dict[str, Any]:
    """What an index of `documents` encoded by `model` depends on: the model's kind, its
    config (encoding settings included: max lengths, pruning) without the path it was loaded
    from, a fingerprint of its weights, and fingerprints of the documents' ids and texts."""
    config = getattr(model, "config", None)
    settings: dict[str, Any] = {}
    if is_dataclass(config):
        every = OmegaConf.to_container(OmegaConf.structured(config), enum_to_str=True)
        # not recorded: where the weights were loaded from (one model may live in several
        # folders), fields used only to create weights (the fingerprint covers those) or only
        # in training, and `query_*` fields, which shape query encoding only: an index holds
        # documents
        ignored = {"name_or_path", *config.initialisation_fields, *config.training_fields}
        settings = {
            key: value
            for key, value in every.items()
            if key not in ignored and not key.startswith("query_")
        }
        # dropout is inactive when encoding: training-only overrides do not change an index
        overrides = settings.get("config_overrides") or {}
        settings["config_overrides"] = {k: v for k, v in overrides.items() if "dropout" not in k}
    return {
        "model": {
            "kind": type(model).__name__,
            "config": settings,
            "weights_sha1": weights_fingerprint(model),
        },
        "documents": {
            "count": len(documents),
            "ids_sha1": _joined_sha1(documents, "\n"),
            "texts_sha1": _joined_sha1(document_texts(documents), "\0"),
        },
    }


def save_index(
    index: IndexConfig, searcher: SearchIndex, folder: Path, provenance: dict[str, Any]
) -> None:
    """Write `searcher` and its manifest into `folder`, atomically."""
    with atomic_directory(folder) as tmp:
        searcher.save(tmp)
        manifest = {"version": MANIFEST_VERSION, "index": type(index).__name__, **provenance}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def open_index(
    index: IndexConfig, folder: Path, provenance: dict[str, Any], score: ScoreFn
) -> SearchIndex:
    """The index saved in `folder`, after checking that this model and these documents are
    the ones that produced it; a difference is a ConfigError naming it."""
    manifest_file = folder / MANIFEST
    where = f"index.load={str(folder)!r}"
    if not manifest_file.is_file():
        raise ConfigError(f"{where} has no {MANIFEST}: not a saved index")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{manifest_file} is not valid JSON ({error.msg})") from None
    if manifest.get("version") != MANIFEST_VERSION:
        raise ConfigError(
            f"{where} was saved by an older xpretrieval that did not record the model it "
            "encoded with; rebuild it with index.save=true"
        )
    if manifest["index"] != type(index).__name__:
        raise ConfigError(
            f"{where} holds a {manifest['index']} index but the config's index is "
            f"{type(index).__name__}; choose the same index group"
        )
    saved_kind, kind = manifest["model"]["kind"], provenance["model"]["kind"]
    if saved_kind != kind:
        raise ConfigError(
            f"{where} was encoded by a {saved_kind} but this run's model is a {kind}; "
            "an index can only be searched with the model that built it"
        )
    differences = _differences(
        {"model": manifest["model"], "documents": manifest["documents"]}, provenance
    )
    if differences:
        raise ConfigError(
            f"{where} was built by another model or from other documents: "
            + "; ".join(differences)
            + ". Search it with the model and collection that built it, or rebuild it"
        )
    return index.open(folder, score)


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Readable differences between two provenance records (index's value, then this run's)."""
    flat_saved, flat_current = flatten(saved), flatten(current)
    explained = {
        "model.weights_sha1": "the model's weights differ",
        "documents.ids_sha1": "the documents' ids differ",
        "documents.texts_sha1": "the documents' texts differ",
    }
    differences = []
    for key in sorted(set(flat_saved) | set(flat_current)):
        old, new = flat_saved.get(key), flat_current.get(key)
        if old == new:
            continue
        if key in explained:
            differences.append(explained[key])
        else:
            differences.append(f"{key}: {old!r} in the index, {new!r} now")
    return differences


def _joined_sha1(parts: Iterable[str], separator: str) -> str:
    """SHA-1 of `separator.join(parts)`, hashed part by part (a corpus need not fit in memory)."""
    digest = hashlib.sha1()
    for index, part in enumerate(parts):
        digest.update(((separator if index else "") + part).encode("utf-8"))
    return digest.hexdigest()
