"""Collections from a BEIR folder and from ir-datasets, and the errors bad data gets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY_BEIR
from xpretrieval.core.errors import DataError
from xpretrieval.data import Split
from xpretrieval.data.beir import read_qrels_tsv
from xpretrieval.data.collection import Collection


def test_beir_folder_loads_docs_queries_and_split_qrels():
    train = Collection.from_beir(TINY_BEIR, "train")
    test = Collection.from_beir(TINY_BEIR, "test")
    assert len(train.documents) == len(test.documents) == 20
    assert train.documents["bee-0"] == (
        "Bee Honey bees pollinate flowering plants and live in large colonies."
    )
    assert len(train.queries) == 6 and len(test.queries) == 4  # only judged queries are kept
    assert set(train.queries).isdisjoint(test.queries)
    assert train.qrels["q-bee"] == {"bee-0": 1, "bee-1": 1}  # CRLF and header handled


def test_split_config_dispatches_to_the_beir_reader():
    collection = Split(beir_folder=str(TINY_BEIR), split="test").load()
    assert collection.name == "tiny_beir/test"


@pytest.mark.shared_data
def test_ir_datasets_id_loads_offline():
    collection = Split(ir_datasets="beir/scifact/test").load()
    assert len(collection.documents) == 5183
    assert len(collection.queries) == 300
    assert sum(len(judged) for judged in collection.qrels.values()) == 339


def test_unknown_ir_datasets_id_is_a_clear_error():
    with pytest.raises(DataError, match="unknown ir-datasets id 'beir/no-such-set'"):
        Split(ir_datasets="beir/no-such-set").load()


@pytest.fixture
def beir_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(TINY_BEIR, tmp_path / "beir"))


def test_missing_file_names_the_file(beir_copy):
    (beir_copy / "queries.jsonl").unlink()
    with pytest.raises(DataError, match=r"lacks .*queries\.jsonl"):
        Collection.from_beir(beir_copy, "train")


def test_missing_split_names_the_qrels_file(beir_copy):
    with pytest.raises(DataError, match=r"qrels/dev\.tsv"):
        Collection.from_beir(beir_copy, "dev")


def test_malformed_json_line_is_located(beir_copy):
    corpus = beir_copy / "corpus.jsonl"
    lines = corpus.read_text().splitlines()
    lines[2] = '{"_id": "broken", "text": '
    corpus.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"corpus\.jsonl:3: invalid JSON"):
        Collection.from_beir(beir_copy, "train")


def test_duplicate_document_id_is_located(beir_copy):
    corpus = beir_copy / "corpus.jsonl"
    with corpus.open("a") as handle:
        handle.write(json.dumps({"_id": "bee-0", "title": "", "text": "again"}) + "\n")
    with pytest.raises(DataError, match=r"corpus\.jsonl:21: duplicate id 'bee-0'"):
        Collection.from_beir(beir_copy, "train")


def test_non_utf8_bytes_are_located(beir_copy):
    with (beir_copy / "queries.jsonl").open("ab") as handle:
        handle.write(b'{"_id": "x", "text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"queries\.jsonl:11: not valid UTF-8"):
        Collection.from_beir(beir_copy, "train")


def test_bad_qrels_score_is_located(tmp_path):
    qrels = tmp_path / "test.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td1\thigh\n")
    with pytest.raises(DataError, match=r"test\.tsv:2: relevance score must be an integer"):
        read_qrels_tsv(qrels)


def test_qrels_on_unknown_ids_warn_and_fail_when_none_remain(beir_copy, caplog):
    qrels = beir_copy / "qrels" / "train.tsv"
    qrels.write_text(qrels.read_text() + "q-bee\tno-such-doc\t1\nno-such-query\tbee-0\t1\n")
    collection = Collection.from_beir(beir_copy, "train")
    assert (
        "ignored 1 judgements naming unknown queries and 1 naming unknown documents" in caplog.text
    )
    assert "no-such-doc" not in collection.qrels["q-bee"]
    qrels.write_text("query-id\tcorpus-id\tscore\nnope\tbee-0\t1\n")
    with pytest.raises(DataError, match="no relevance judgement names a known query and document"):
        Collection.from_beir(beir_copy, "train")
