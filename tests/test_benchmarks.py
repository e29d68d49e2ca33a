"""Every benchmark function runs for one step on the tiny model and tiny data, so `make bench`
cannot rot unnoticed (its figures are measured by `make bench`, never asserted here)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import numpy as np
import pytest
import scipy.sparse

from tests.conftest import ROOT, TINY_BEIR
from xpretrieval.data.collection import Collection


def benchmark(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_and_encoding_throughput_run(tiny_model_dir):
    throughput = benchmark("train_throughput")
    train = Collection.from_beir(TINY_BEIR, "train")
    assert throughput.ours_training(train, 2, 1, str(tiny_model_dir)) > 0
    assert throughput.theirs_training(train, 2, 1, str(tiny_model_dir)) > 0
    assert throughput.trainer_training(train, 2, 1, str(tiny_model_dir)) > 0
    ours, theirs = throughput.encoding(list(train.documents.values()), str(tiny_model_dir))
    assert ours > 0 and theirs > 0


def test_sparse_index_comparison_runs():
    pytest.importorskip("seismic", reason="pyseismic-lsr is the optional [seismic] extra")
    rng = np.random.default_rng(0)
    docs = scipy.sparse.random(
        60, 200, density=0.05, format="csr", random_state=rng, dtype=np.float32
    )
    queries = scipy.sparse.random(
        5, 200, density=0.1, format="csr", random_state=rng, dtype=np.float32
    )
    figures = benchmark("sparse_index").compare(docs, queries, repeats=1)
    assert figures["ratio_vs_scipy"] > 0 and figures["ratio_vs_seismic"] > 0


def test_splade_training_comparison_runs(masked_lm_dir):
    splade = benchmark("splade_training")
    train = Collection.from_beir(TINY_BEIR, "train")
    figures = {
        name: splade.measure(name, train, str(masked_lm_dir), 2, 16, 1) for name in splade.RUNS
    }
    result = splade.summary(figures)
    assert result["splade_training"]["ratio"] > 0 and result["splade_training"]["memory_ratio"] > 0
    assert "| xpretrieval-plain |" in splade.table(result)


def test_sparse_encoding_comparison_runs(masked_lm_dir):
    train = Collection.from_beir(TINY_BEIR, "train")
    texts = list(train.documents.values())
    figures = benchmark("sparse_encoding").encoding(texts, str(masked_lm_dir), 4, 32)
    assert figures["ratio"] > 0 and figures["max_abs_difference"] < 1e-4


def test_dense_search_comparison_runs():
    pytest.importorskip("faiss", reason="faiss-cpu is in the [bench] extra")
    search = benchmark("dense_search")
    documents, queries = search.unit_vectors(50, 8, seed=0), search.unit_vectors(3, 8, seed=1)
    figures = search.compare(documents, queries, k=5, repeats=1)
    assert figures["ratio"] > 0 and figures["top_k_agreement"] == 1.0
