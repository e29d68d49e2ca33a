"""Quantised search and quantisation-aware training: binary and int8 indexes return what a
brute-force NumPy computation over the quantised vectors gives, report their bytes per
document, rescore as configured; the training forward quantises with straight-through
gradients; a QAT run trains and is evaluated with the matching index; mismatches are refused
naming the key; the report tabulates a metric against bytes per document."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml

import xpretrieval
from tests import inprocess
from tests.conftest import TINY_BEIR, tiny_overrides
from tests.test_inverted_index import shuffled_batches
from xpretrieval.core.errors import ConfigError
from xpretrieval.data.collection import Collection
from xpretrieval.models.dense import Dense
from xpretrieval.models.quantization import (
    Quantization,
    binary_values,
    int8_values,
    quantize_for_training,
    trained_quantization,
)
from xpretrieval.retrieval.quantized import Quantized
from xpretrieval.retrieval.saved import index_provenance, open_index, save_index

pytest.importorskip("faiss", reason="faiss-cpu is the optional [faiss] extra")

DOT = lambda q, d: q @ d.T  # noqa: E731


def unit_vectors(n: int, dim: int, seed: int) -> torch.Tensor:
    vectors = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.normalize(vectors, dim=1)


def build(config: Quantized, documents: torch.Tensor):
    return config.build(shuffled_batches(documents, 37, 0), len(documents), DOT)


def brute_force_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Each query's k best scores, best first."""
    return -np.sort(-scores, axis=1)[:, :k]


def assert_top_k(found: tuple[torch.Tensor, torch.Tensor], scores: np.ndarray, k: int) -> None:
    """`found` holds the k best scores of `scores` `[queries, documents]`, each at its row
    (ties may come in any order)."""
    got_scores, got_rows = (t.numpy() for t in found)
    np.testing.assert_allclose(got_scores, brute_force_top_k(scores, k), rtol=0, atol=1e-5)
    at_rows = np.take_along_axis(scores, got_rows, axis=1)
    np.testing.assert_allclose(got_scores, at_rows, rtol=0, atol=1e-5)
    assert all(len(set(row)) == k for row in got_rows.tolist())


@pytest.mark.parametrize("dims", [None, 12], ids=["all-dims", "prefix-12"])
def test_binary_search_is_brute_force_hamming_over_sign_bits(dims):
    documents, queries = unit_vectors(300, 20, 0), unit_vectors(7, 20, 1)  # 20: padded bits
    found = build(Quantized(quantization="binary", dims=dims, normalize=True), documents)
    d = 20 if dims is None else dims
    signs = lambda x: np.where(x.numpy()[:, :d] > 0, 1.0, -1.0)  # noqa: E731
    hamming = (signs(queries)[:, None, :] != signs(documents)[None, :, :]).sum(-1)
    assert_top_k(found.search(queries, 10), 1 - 2 * hamming / d, 10)


@pytest.mark.parametrize("dims", [None, 12], ids=["all-dims", "prefix-12"])
def test_int8_search_is_the_float_query_against_brute_force_decoded_codes(dims):
    documents, queries = unit_vectors(300, 20, 2), unit_vectors(7, 20, 3)
    config = Quantized(quantization="int8", dims=dims, normalize=True, calibration_size=300)
    found = build(config, documents)
    cut = lambda x: torch.nn.functional.normalize(x[:, :dims], dim=1).numpy()  # noqa: E731
    docs, query = (
        (documents.numpy(), queries.numpy()) if dims is None else map(cut, (documents, queries))
    )
    low, high = docs.min(axis=0), docs.max(axis=0)  # ranges calibrated on every document
    codes = np.clip(np.floor((docs - low) / (high - low) * 255), 0, 255)
    decoded = low + (codes + 0.5) / 255 * (high - low)
    assert_top_k(found.search(queries, 10), query @ decoded.T, 10)


def test_int8_ranges_come_from_the_first_calibration_documents():
    documents, queries = unit_vectors(200, 16, 4), unit_vectors(3, 16, 5)
    config = Quantized(quantization="int8", normalize=True, calibration_size=50)
    batches = [(torch.arange(i, i + 25), documents[i : i + 25]) for i in range(0, 200, 25)]
    found = config.build(batches, 200, DOT).search(queries, 5)
    docs = documents.numpy()
    low, high = docs[:50].min(axis=0), docs[:50].max(axis=0)
    decoded = torch.from_numpy(docs).float()
    decoded = int8_values(decoded, torch.from_numpy(low), torch.from_numpy(high)).numpy()
    assert_top_k(found, queries.numpy() @ decoded.T, 5)


def test_the_training_quantisers_give_the_values_the_indexes_score():
    documents, queries = unit_vectors(40, 24, 6), unit_vectors(4, 24, 7)
    binary = build(Quantized(quantization="binary", normalize=True), documents)
    expected = binary_values(queries) @ binary_values(documents).T
    assert_top_k(binary.search(queries, 40), expected.numpy(), 40)
    int8 = build(Quantized(quantization="int8", normalize=True), documents)
    low, high = documents.min(dim=0).values, documents.max(dim=0).values
    expected = queries @ int8_values(documents, low, high).T
    assert_top_k(int8.search(queries, 40), expected.numpy(), 40)


@pytest.mark.parametrize(
    ("quantization", "dims", "expected"),
    [
        ("binary", None, 4),
        ("binary", 20, 3),
        ("int8", None, 32),
        ("int8", 16, 16),
        ("none", None, 128),
        ("none", 8, 32),
    ],
)
def test_bytes_per_document(quantization, dims, expected):
    config = Quantized(quantization=quantization, dims=dims, normalize=True, rescore="full")
    statistics = build(config, unit_vectors(50, 32, 8)).statistics()
    assert statistics["bytes_per_document"] == expected
    assert statistics["bits_per_dimension"] == Quantization(quantization).bits
    assert statistics["dimensions"] == (dims or 32)
    assert statistics["rescore_bytes_per_document"] == 32 * 4  # the full vectors kept too
    assert statistics["megabytes"] == pytest.approx(50 * expected / 2**20)


def test_rescoring_against_full_or_quantised_documents():
    documents, queries = unit_vectors(60, 16, 9), unit_vectors(5, 16, 10)
    every = dict(rescore_multiplier=12, normalize=True)  # 5 x 12 candidates: all 60 documents
    full = build(Quantized(quantization="binary", dims=8, rescore="full", **every), documents)
    assert_top_k(full.search(queries, 5), (queries @ documents.T).numpy(), 5)
    rescored = build(Quantized(quantization="binary", rescore="quantized", **every), documents)
    expected = queries @ binary_values(documents).T  # the float query against the sign bits
    assert_top_k(rescored.search(queries, 5), expected.numpy(), 5)


def test_a_saved_index_reopens_to_the_same_results_and_refuses_other_settings(tmp_path):
    documents, queries = unit_vectors(80, 16, 11), unit_vectors(4, 16, 12)
    config = Quantized(quantization="int8", dims=8, normalize=True, rescore="full")
    built = build(config, documents)
    provenance = index_provenance(None, {f"d{i}": f"text {i}" for i in range(80)})
    save_index(config, built, tmp_path / "index", provenance)
    opened = open_index(config, tmp_path / "index", provenance, DOT)
    for got, expected in zip(opened.search(queries, 5), built.search(queries, 5), strict=True):
        assert torch.equal(got, expected)
    other = Quantized(quantization="binary", dims=8, normalize=True)
    with pytest.raises(ConfigError, match="index.quantization=binary: the index at index.load"):
        open_index(other, tmp_path / "index", provenance, DOT)


def test_binary_straight_through_quantises_forward_and_passes_the_gradient():
    vectors = unit_vectors(6, 16, 13).requires_grad_()
    quantized = quantize_for_training(vectors, Quantization.binary, is_query=True)
    assert torch.equal(quantized.abs(), torch.full_like(quantized, 1 / math.sqrt(16)))
    assert torch.equal(quantized > 0, vectors > 0)
    upstream = torch.randn(6, 16)
    (quantized * upstream).sum().backward()
    assert torch.equal(vectors.grad, upstream)  # identity: the gradient passes straight through


def test_int8_straight_through_quantises_documents_with_the_batch_ranges():
    vectors = unit_vectors(8, 16, 14).requires_grad_()
    documents = quantize_for_training(vectors, Quantization.int8, is_query=False)
    low, high = vectors.detach().min(dim=0).values, vectors.detach().max(dim=0).values
    torch.testing.assert_close(documents, int8_values(vectors.detach(), low, high))
    assert (documents - vectors).abs().max() <= (high - low).max() / 255
    upstream = torch.randn(8, 16)
    (documents * upstream).sum().backward()
    assert torch.equal(vectors.grad, upstream)
    queries = quantize_for_training(vectors, Quantization.int8, is_query=True)
    assert queries is vectors  # int8 search scores the float query


def test_the_model_quantises_in_training_only(tiny_model_dir):
    model = Dense(name_or_path=str(tiny_model_dir), quantization="binary").build()
    texts = ["honey bees pollinate flowering plants", "a comet has a tail"]
    model.train()
    trained = model.forward_documents(texts)
    assert torch.allclose(trained.abs(), torch.full_like(trained, 1 / math.sqrt(32)))
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(model.forward_documents(texts).abs(), trained.abs())


def test_qat_trains_end_to_end_and_evaluates_with_the_matching_index(tiny_model_dir, tmp_path):
    overrides = [
        *tiny_overrides(tiny_model_dir),
        "model.quantization=binary",
        "loss@losses.rank=matryoshka",
        "losses.rank.dims=[8,16]",
        "index=quantized",
        "index.dims=16",
    ]
    metrics = inprocess.train(overrides, tmp_path / "train")
    assert metrics["index"]["bits_per_dimension"] == 1
    assert metrics["index"]["bytes_per_document"] == 2 and metrics["aggregate"]["nDCG@10"] > 0
    config = yaml.safe_load((tmp_path / "train" / "config.yaml").read_text())
    assert config["index"]["quantization"] == "binary"  # resolved from the model, recorded
    checkpoint = tmp_path / "train" / "checkpoints" / "step-0000006"
    saved = (checkpoint / "xpretrieval_model.yaml").read_text()
    assert "quantization: binary" in saved
    # evaluating the checkpoint later: the index follows the quantization it was saved with
    evaluate = ["model=dense", *tiny_overrides(checkpoint), "index=quantized", "index.dims=16"]
    inprocess.run("evaluate", evaluate, tmp_path / "evaluate")
    evaluated = json.loads((tmp_path / "evaluate" / "metrics.json").read_text())
    assert evaluated["index"]["bits_per_dimension"] == 1
    assert evaluated["aggregate"] == pytest.approx(metrics["aggregate"], abs=1e-6)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], "model.quantization=binary: the model's vectors were trained for binary search"),
        (["index=faiss"], "model.quantization=binary: .* a Faiss index does not do"),
        (["index=quantized", "index.quantization=int8"], "index.quantization=int8: model"),
    ],
    ids=["exact", "faiss", "other-precision"],
)
def test_an_index_that_does_not_match_the_training_is_refused(tiny_model_dir, overrides, message):
    given = [*tiny_overrides(tiny_model_dir), "model.quantization=binary", *overrides]
    with pytest.raises(ConfigError, match=message):
        xpretrieval.configure(given, command="evaluate")


def test_settings_that_change_nothing_or_do_not_fit_are_refused(tiny_model_dir):
    int8_model = [*tiny_overrides(tiny_model_dir), "model.quantization=int8", "index=quantized"]
    with pytest.raises(ConfigError, match="^index.rescore=quantized changes nothing"):
        xpretrieval.configure([*int8_model, "index.rescore=quantized"], command="evaluate")
    with pytest.raises(ConfigError, match="index.rescore=quantized changes nothing"):
        xpretrieval.configure(
            [
                *tiny_overrides(tiny_model_dir),
                "index=quantized",
                "index.quantization=int8",
                "index.rescore=quantized",
            ],
            command="evaluate",
        )
    with pytest.raises(ConfigError, match="index.dims=64: the model's vectors have 32"):
        build(Quantized(quantization="binary", dims=64, normalize=True), unit_vectors(9, 32, 0))


def test_search_fits_the_index_to_the_model(tiny_model_dir):
    model = Dense(name_or_path=str(tiny_model_dir), quantization="int8").build()
    collection = Collection.from_beir(TINY_BEIR, "test")
    run = xpretrieval.search(model, collection, k=5, index=Quantized())
    exact = xpretrieval.search(Dense(name_or_path=str(tiny_model_dir)).build(), collection, k=5)
    assert run.keys() == exact.keys() and all(len(ranked) == 5 for ranked in run.values())
    with pytest.raises(ConfigError, match="model.quantization=int8"):
        xpretrieval.search(model, collection, k=5)  # exact search of int8-trained vectors


def test_one_query_cut_to_a_prefix_leaves_the_callers_vector_as_it_was():
    documents, query = unit_vectors(30, 16, 15), unit_vectors(1, 16, 16)
    before = query.clone()
    build(Quantized(quantization="none", dims=8, normalize=True), documents).search(query, 3)
    assert torch.equal(query, before)


def test_a_dense_model_saved_before_quantization_existed_still_loads(tiny_model_dir, tmp_path):
    """Checkpoints saved before `model.quantization` was added lack it in their settings file:
    they load as what they computed (no quantisation), with the same scores."""
    Dense(name_or_path=str(tiny_model_dir)).build().save(tmp_path)
    settings_file = tmp_path / "xpretrieval_model.yaml"
    lines = settings_file.read_text().splitlines(keepends=True)
    older = [line for line in lines[1:] if not line.startswith("quantization:")]  # no header yet
    assert len(older) == len(lines) - 2
    settings_file.write_text("".join(older))
    model = xpretrieval.load(tmp_path, device="cpu")
    assert trained_quantization(model.config) is Quantization.none
    fresh = Dense(name_or_path=str(tiny_model_dir)).build()
    with torch.no_grad():
        texts = ["honey bees pollinate flowering plants"]
        torch.testing.assert_close(model.encode_documents(texts), fresh.encode_documents(texts))


def test_int8_training_with_micro_batches_is_refused(tiny_model_dir):
    """int8's ranges come from the documents encoded together: micro-batches would make the
    loss depend on their size."""
    given = [*tiny_overrides(tiny_model_dir), "model.quantization=int8", "index=quantized"]
    with pytest.raises(ConfigError, match="^model.quantization=int8 calibrates"):
        xpretrieval.configure([*given, "batcher=micro", "batcher.micro=2"])
    xpretrieval.configure([*given, "model.quantization=binary", "batcher=micro", "batcher.micro=2"])
