"""Documents kept on disk (an offset index over corpus.jsonl, or ir-datasets' docstore) read
as the in-memory collection does: same ids in the same order, same texts, same metrics; bad
lines are located."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from tests import inprocess
from tests.conftest import TINY_BEIR, tiny_overrides
from tests.test_ir_datasets_sources import register
from xpretrieval.core.errors import DataError
from xpretrieval.data import Split
from xpretrieval.data.collection import Collection
from xpretrieval.data.documents import JsonlDocuments, OnDiskDocuments
from xpretrieval.data.irds import DocstoreDocuments


def assert_reads_as(disk: Collection, memory: Collection) -> None:
    """`disk` holds what `memory` holds, in the same order, by id, by row and pickled."""
    assert isinstance(disk.documents, OnDiskDocuments)
    assert list(disk.documents) == list(memory.documents)
    assert dict(disk.documents) == memory.documents
    assert disk.queries == memory.queries and disk.qrels == memory.qrels
    texts = disk.document_texts()
    assert list(texts) == memory.document_texts() == [texts[i] for i in range(len(texts))]
    assert texts[-1] == memory.document_texts()[-1] and texts[2:4] == memory.document_texts()[2:4]
    copy = pickle.loads(pickle.dumps(disk.documents))  # as worker processes receive it
    assert copy[next(iter(memory.documents))] == next(iter(memory.documents.values()))
    assert "no-such-doc" not in copy


def test_on_disk_documents_read_as_the_in_memory_ones():
    disk = Collection.from_beir(TINY_BEIR, "test", on_disk=True)
    assert_reads_as(disk, Collection.from_beir(TINY_BEIR, "test"))


def tiny_beir_with_a_repeated_line(tmp_path, row: int) -> tuple[Path, int]:
    """A copy of the tiny BEIR folder whose corpus repeats its row-th line at the end, and the
    number of that last line."""
    folder = tmp_path / "beir"
    shutil.copytree(TINY_BEIR, folder)
    corpus = folder / "corpus.jsonl"
    lines = corpus.read_text().splitlines()
    corpus.write_text("\n".join([*lines, lines[row]]) + "\n")
    return folder, len(lines) + 1


def test_bad_corpus_lines_are_refused_naming_the_line(tmp_path):
    folder, last = tiny_beir_with_a_repeated_line(tmp_path, 0)
    corpus = folder / "corpus.jsonl"
    lines = corpus.read_text().splitlines()
    with pytest.raises(DataError, match=rf"corpus.jsonl:{last}: duplicate id"):
        Collection.from_beir(folder, "test", on_disk=True)
    corpus.write_text("\n".join([*lines[:3], '{"_id": "x"}']) + "\n")
    with pytest.raises(DataError, match=r'corpus.jsonl:4: expected a string "text" field'):
        Collection.from_beir(folder, "test", on_disk=True)


def beir_through_ir_datasets(folder, tmp_path) -> str:
    """Register a BEIR folder's test split with ir-datasets from local files (its docstore is
    built under tmp_path) and return the id."""
    from ir_datasets.datasets.beir import BeirQrels, BeirTitleDoc
    from ir_datasets.formats import GenericQuery, JsonlDocs, JsonlQueries
    from ir_datasets.util import LocalDownload

    corpus = tmp_path / "corpus.jsonl"
    shutil.copy(folder / "corpus.jsonl", corpus)
    docs = JsonlDocs(
        LocalDownload(corpus), BeirTitleDoc, {"doc_id": "_id", "text": "text", "title": "title"}
    )
    queries = JsonlQueries(
        LocalDownload(folder / "queries.jsonl"), GenericQuery, {"query_id": "_id", "text": "text"}
    )
    return register("beir", docs, queries, BeirQrels(LocalDownload(folder / "qrels/test.tsv"), {}))


def test_documents_through_the_ir_datasets_docstore_read_as_in_memory(tmp_path):
    dataset_id = beir_through_ir_datasets(TINY_BEIR, tmp_path)
    memory = Collection.from_ir_datasets(dataset_id)
    disk = Split(ir_datasets=dataset_id, on_disk=True).load()
    assert isinstance(disk.documents, DocstoreDocuments)
    assert_reads_as(disk, memory)
    assert memory.documents == Collection.from_beir(TINY_BEIR).documents


def test_a_repeated_ir_datasets_document_id_is_refused_in_memory_and_on_disk(tmp_path):
    folder, last = tiny_beir_with_a_repeated_line(tmp_path, 1)
    dataset_id = beir_through_ir_datasets(folder, tmp_path)
    for on_disk in (False, True):
        with pytest.raises(DataError, match=rf"document {last}: duplicate id 'bee-1'"):
            Collection.from_ir_datasets(dataset_id, on_disk=on_disk)


def test_evaluate_on_disk_measures_what_in_memory_measures(tiny_model_dir, tmp_path):
    metrics = {}
    for name, extra in {"memory": [], "disk": ["dataset.test.on_disk=true"]}.items():
        run_dir = tmp_path / name
        overrides = [*tiny_overrides(tiny_model_dir), f"dataset.test.beir_folder={TINY_BEIR}"]
        inprocess.run("evaluate", [*overrides, *extra], run_dir)
        metrics[name] = json.loads((run_dir / "metrics.json").read_text())["aggregate"]
    assert metrics["disk"] == metrics["memory"]


def test_ids_of_every_length_survive_chunking(tmp_path, monkeypatch):
    """Ids are kept as NumPy bytes in chunks of different widths: none may be cut."""
    monkeypatch.setattr(JsonlDocuments, "CHUNK", 2)
    corpus = tmp_path / "corpus.jsonl"
    ids = ["a", "bbbbbbbbbb", "c", "dd", "ééé", "f"]
    corpus.write_text("".join(json.dumps({"_id": i, "text": f"text {i}"}) + "\n" for i in ids))
    documents = JsonlDocuments(corpus)
    assert (
        list(documents) == ids and documents["ééé"] == "text ééé" and "bbbbbbbbb" not in documents
    )


def test_samplers_draw_the_same_records_from_documents_on_disk():
    """Random negatives are drawn by position from the ids, which stay NumPy bytes on disk."""
    import itertools

    from xpretrieval.samplers import BatchwiseSampler

    memory = Collection.from_beir(TINY_BEIR, "train")
    disk = Collection.from_beir(TINY_BEIR, "train", on_disk=True)
    draws = [
        list(itertools.islice(BatchwiseSampler().records(c, seed=3), 30)) for c in (memory, disk)
    ]
    assert draws[0] == draws[1]
