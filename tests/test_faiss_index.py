"""index=faiss: Flat returns the exact top-k; learning and graph indexes build from streamed,
shuffled batches (rows as ids), save and reopen to the same results, and report their recall
against exact search in metrics.json; bad settings are refused naming the field."""

from __future__ import annotations

import json

import pytest
import torch

from tests import inprocess
from tests.conftest import tiny_overrides
from tests.test_inverted_index import shuffled_batches
from xpretrieval.core.errors import ConfigError
from xpretrieval.retrieval import ExactIndex
from xpretrieval.retrieval.faiss_index import Faiss
from xpretrieval.retrieval.saved import index_provenance, open_index, save_index

pytest.importorskip("faiss", reason="faiss-cpu is the optional [faiss] extra")

DOT = lambda q, d: q @ d.T  # noqa: E731


def unit_vectors(n: int, dim: int, seed: int) -> torch.Tensor:
    vectors = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.normalize(vectors, dim=1)


def test_flat_equals_exact_search():
    documents, queries = unit_vectors(300, 16, 0), unit_vectors(7, 16, 1)
    exact = ExactIndex().build(shuffled_batches(documents, 32, 0), 300, DOT).search(queries, 10)
    flat = Faiss().build(shuffled_batches(documents, 32, 1), 300, DOT).search(queries, 10)
    assert torch.equal(flat[1], exact[1])
    torch.testing.assert_close(flat[0], exact[0])
    assert not Faiss().approximate and Faiss(factory="HNSW32").approximate


@pytest.mark.parametrize(
    "config",
    [
        Faiss(factory="IVF8,Flat", nprobe=8, train_size=100),  # every list: exact again
        Faiss(factory="HNSW16", ef_search=256),
    ],
    ids=["ivf", "hnsw"],
)
def test_learning_and_graph_indexes_save_reopen_and_find_the_top_k(config, tmp_path):
    documents, queries = unit_vectors(300, 16, 2), unit_vectors(5, 16, 3)
    exact = ExactIndex().build([(torch.arange(300), documents)], 300, DOT).search(queries, 5)
    built = config.build(shuffled_batches(documents, 40, 0), 300, DOT)
    assert torch.equal(built.search(queries, 5)[1], exact[1])
    provenance = index_provenance(None, {f"d{i}": f"text {i}" for i in range(300)})
    save_index(config, built, tmp_path / "index", provenance)
    opened = open_index(config, tmp_path / "index", provenance, DOT)
    for got, expected in zip(opened.search(queries, 5), built.search(queries, 5), strict=True):
        assert torch.equal(got, expected)
    assert opened.statistics()["documents"] == 300


def test_bad_settings_are_refused_naming_the_field():
    documents = unit_vectors(20, 8, 4)
    with pytest.raises(ConfigError, match="index.factory='NoSuchIndex7'"):
        Faiss(factory="NoSuchIndex7").build([(torch.arange(20), documents)], 20, DOT)
    flat = Faiss(nprobe=4).build([(torch.arange(20), documents)], 20, DOT)
    with pytest.raises(ConfigError, match="index.nprobe: a 'Flat' index has no nprobe"):
        flat.search(documents[:2], 3)
    with pytest.raises(ValueError, match="recall_queries must be >= 0"):
        Faiss(recall_queries=-1)


def test_an_approximate_index_reports_its_recall_in_metrics(tiny_model_dir, tmp_path):
    overrides = ["index=faiss", "index.factory=HNSW8", "index.ef_search=1"]
    inprocess.run("evaluate", [*tiny_overrides(tiny_model_dir), *overrides], tmp_path)
    index = json.loads((tmp_path / "metrics.json").read_text())["index"]
    assert 0 < index["recall@10_vs_exact"] <= 1 and index["recall_queries"] == 4
    # over passages, the recall is of passages: named so, never taken for the documents'
    windows = ["dataset.test.passages.length=4", "dataset.test.passages.stride=2"]
    passages = tmp_path / "passages"
    inprocess.run("evaluate", [*tiny_overrides(tiny_model_dir), *overrides, *windows], passages)
    index = json.loads((passages / "metrics.json").read_text())["index"]
    assert 0 < index["passage_recall@10_vs_exact"] <= 1 and "recall@10_vs_exact" not in index
