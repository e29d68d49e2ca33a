"""Every benchmark function runs for one step on the tiny model and tiny data, so `make bench`
cannot rot unnoticed (its figures are measured by `make bench`, never asserted here)."""

from __future__ import annotations

import json

import pytest

from benchmarks import backends, encoding, gradient_checkpointing, retrieval, table, training
from benchmarks.common import row, transformer_flops
from tests.conftest import TINY_BEIR
from xpretrieval.core.device import Precision
from xpretrieval.data.collection import Collection
from xpretrieval.models import Splade


@pytest.fixture(scope="module")
def train() -> Collection:
    return Collection.from_beir(TINY_BEIR, "train")


@pytest.mark.parametrize("kind", ["dense", "splade"])
def test_every_training_run_measures(kind, train, masked_lm_dir):
    setting = training.Setting(train, str(masked_lm_dir), batch=2, length=16, steps=2)
    frameworks = [f for k, f in training.RUNS if k == kind]
    figures = {framework: training.measure(kind, framework, setting) for framework in frameworks}
    assert all(f["samples_per_second"] > 0 and f["peak_rss_gb"] > 0 for f in figures.values())
    assert training.step_flops(kind, setting) > 0
    named = training.named_ratios({f"{kind}_fp32": figures})
    assert all(ratio["ratio"] > 0 for ratio in named.values())


def test_bf16_training_runs_for_both_frameworks(train, masked_lm_dir):
    setting = training.Setting(train, str(masked_lm_dir), 2, 16, 2, Precision.bf16)
    for framework in ("xpretrieval", "st-loop"):
        assert training.measure("dense", framework, setting)["samples_per_second"] > 0


@pytest.mark.parametrize("kind", ["dense", "splade"])
def test_encoding_comparison_agrees(kind, train, masked_lm_dir):
    texts = list(train.documents.values())
    figures = encoding.encoding(kind, texts, str(masked_lm_dir), 4, 32, Precision.fp32, 1)
    assert figures["ratio"] > 0 and figures["disagreement"] < 1e-4
    assert encoding.document_flops(kind, texts, str(masked_lm_dir), 32) > 0


@pytest.mark.parametrize("kind", ["dense", "splade"])
def test_every_backend_of_ours_encodes(kind, train, masked_lm_dir):
    pytest.importorskip("openvino", reason="openvino is in the [backends] extra")
    texts = list(train.documents.values())[:6]
    figures = backends.ours(kind, str(masked_lm_dir), texts, 4, 32, 1)
    assert set(figures) >= {"torch fp32", "onnx fp32", "openvino fp32", "onnx int8 dynamic"}
    assert {"onnx int8 static", "openvino int8 static"} <= set(figures)
    assert figures["onnx fp32"]["disagreement"] < 1e-4
    assert ("torch-compiled fp32" in figures) == (kind == "dense")
    assert figures.get("torch-compiled fp32", {"disagreement": 0})["disagreement"] < 1e-4
    assert all(figure["docs_per_second"] > 0 for figure in figures.values())


@pytest.mark.shared_data  # all-MiniLM-L6-v2: the peers' older transformers cannot read the
def test_peer_backends_run_in_their_own_environment(train):  # tiny model's tokenizer files
    if not backends.PEERS_PYTHON.exists():
        pytest.skip(f"{backends.PEERS_PYTHON}: `make bench` creates it")
    texts = list(train.documents.values())[:4]
    figures = backends.peers("dense", backends.MODEL, texts, 4, 32, 1)
    assert figures["onnx fp32"]["disagreement"] < 1e-4
    mine = {"torch fp32": {"docs_per_second": 2.0}, "onnx int8 dynamic": {"docs_per_second": 3.0}}
    compared = backends.against_fastest(mine, figures)
    assert compared["fp32"]["ratio"] > 0 and "int8" in compared


def test_sparse_engines_agree_on_bm25_weights(train):
    pytest.importorskip("seismic", reason="pyseismic-lsr is in the [bench] extra")
    docs, queries, bm25s_search = retrieval.bm25_vectors(train)
    figures = retrieval.sparse(docs, queries, repeats=1, bm25s_search=bm25s_search)
    assert figures["xpretrieval inverted"]["recall_at_10"] == 1.0
    assert figures["bm25s"]["recall_at_10"] == 1.0  # the same scores (ties count as hits)
    assert figures["scipy CSR product"]["recall_at_10"] == 1.0


def test_sparse_engines_take_a_splade_checkpoints_vectors(train, masked_lm_dir, tmp_path):
    pytest.importorskip("seismic", reason="pyseismic-lsr is in the [bench] extra")
    Splade(name_or_path=str(masked_lm_dir), new_head_bias=0.0).build().save(tmp_path)
    docs, queries = retrieval.splade_vectors(str(tmp_path), train)
    assert docs.shape == (len(train.documents), queries.shape[1]) and docs.nnz > 0
    figures = retrieval.sparse(docs, queries, repeats=1)
    assert figures["xpretrieval inverted"]["recall_at_10"] == 1.0


def test_dense_search_agrees_with_faiss():
    pytest.importorskip("faiss", reason="faiss-cpu is in the [bench] extra")
    figures = retrieval.dense(50, 3, 8, k=5, repeats=1)
    assert figures["ratio"] > 0 and figures["top_k_agreement"] == 1.0


def test_flops_count_a_bert_layer_by_hand():
    class Config:
        hidden_size, num_hidden_layers, intermediate_size, vocab_size = 4, 1, 8, 10

    # 2 x (4 linear 4x4 + 2 linear 4x8) per token, 3 tokens; attention 4 x 4 x 3 x 3
    assert transformer_flops(Config, [3]) == 2 * (4 * 16 + 2 * 32) * 3 + 4 * 4 * 9
    assert transformer_flops(Config, [3], vocab_head=True) - transformer_flops(Config, [3]) == (
        2 * (16 + 40) * 3
    )


def test_the_table_lists_missing_results(tmp_path, monkeypatch):
    monkeypatch.setattr(table, "RESULTS", tmp_path)
    assert "training: not run" in table.table()


def test_the_ceiling_is_the_ratio_a_run_at_the_limit_would_reach(tmp_path, monkeypatch):
    # the peer reaches 0.4 of the machine's limit: doing its FLOPs at the limit is 2.5x faster
    line = row("x", "docs/s", 3.0, 2.0, "peer", limit_fraction=0.6, peer_limit_fraction=0.4)
    assert line["ratio"] == 1.5 and line["ceiling"] == 2.5
    assert "ceiling" not in row("x", "GB", 1.0, 2.0, "peer")  # no limit known
    monkeypatch.setattr(table, "RESULTS", tmp_path)
    (tmp_path / "encoding.json").write_text(json.dumps({"rows": [line]}))
    assert "| 1.50 | 0.60 / 0.40 | 2.50 |" in table.table()


def test_every_sparse_index_build_reports_its_memory(train):
    pytest.importorskip("seismic", reason="pyseismic-lsr is in the [bench] extra")
    docs, _, _ = retrieval.bm25_vectors(train)
    added = retrieval.index_memory(docs)
    assert set(added) == set(retrieval.BUILDS) and all(gb >= 0 for gb in added.values())


@pytest.mark.parametrize("kind", ["dense", "splade"])
def test_gradient_checkpointing_measures_both_states(kind, train, masked_lm_dir):
    setting = gradient_checkpointing.Setting(train, str(masked_lm_dir), batch=2, length=16, steps=2)
    figures = {s: gradient_checkpointing.measure(kind, s == "on", setting) for s in ("off", "on")}
    figures["seconds"] = gradient_checkpointing.step_seconds(kind, setting)
    assert all(figures[s]["step_peak_mb"] > 0 and figures["seconds"][s] > 0 for s in ("off", "on"))
    assert gradient_checkpointing.summary({kind: figures})[1][f"{kind}_gradient_checkpointing"]
