"""The inverted index returns exactly the brute-force top-k on random sparse data."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xpretrieval.core.errors import ConfigError
from xpretrieval.models.encoding import sparse_rows
from xpretrieval.retrieval import ExactIndex, Inverted, InvertedSearch, Seismic
from xpretrieval.retrieval.faiss_index import Faiss
from xpretrieval.retrieval.saved import index_provenance, open_index, save_index


def random_sparse(
    generator: torch.Generator, rows: int, vocab: int, density: float
) -> torch.Tensor:
    """Non-negative weights with about `density` of the entries non-zero (SPLADE-like)."""
    weights = torch.rand(rows, vocab, generator=generator, dtype=torch.float64)
    keep = torch.rand(rows, vocab, generator=generator) < density
    return (weights * keep).float()


def shuffled_batches(documents: torch.Tensor, batch_size: int, seed: int):
    order = torch.randperm(len(documents), generator=torch.Generator().manual_seed(seed))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        yield rows, documents[rows]


@settings(max_examples=60, deadline=None)
@given(
    n_docs=st.integers(1, 60),
    n_queries=st.integers(1, 6),
    vocab=st.integers(1, 50),
    density=st.floats(0.02, 0.6),
    k=st.integers(1, 70),
    batch_size=st.integers(1, 17),
    seed=st.integers(0, 10_000),
    as_sparse_rows=st.booleans(),
)
def test_inverted_top_k_equals_brute_force(
    n_docs, n_queries, vocab, density, k, batch_size, seed, as_sparse_rows
):
    generator = torch.Generator().manual_seed(seed)
    documents = random_sparse(generator, n_docs, vocab, density)
    queries = random_sparse(generator, n_queries, vocab, density)
    batches = shuffled_batches(documents, batch_size, seed)
    if as_sparse_rows:  # as retrieval hands them over: the non-zeros only
        batches = ((rows, sparse_rows(reps)) for rows, reps in batches)
    index = InvertedSearch.from_batches(batches, n_docs)
    assert index.n_postings == int((documents != 0).sum())
    scores, rows = index.search(sparse_rows(queries) if as_sparse_rows else queries, k)
    exact = (queries.double() @ documents.double().T).numpy()
    assert scores.shape == rows.shape == (n_queries, min(k, n_docs))
    for i in range(n_queries):
        # same scores, best first; each returned row really has the score reported
        expected = np.sort(exact[i])[::-1][: min(k, n_docs)]
        np.testing.assert_allclose(scores[i].numpy(), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            exact[i][rows[i].numpy()], scores[i].numpy(), rtol=1e-5, atol=1e-6
        )
        assert len(set(rows[i].tolist())) == len(rows[i])


def test_index_configs_agree_on_sparse_data():
    generator = torch.Generator().manual_seed(0)
    documents = random_sparse(generator, 40, 30, 0.2)
    queries = random_sparse(generator, 5, 30, 0.3)
    dot = lambda q, d: q @ d.T  # noqa: E731
    exact = ExactIndex().build(shuffled_batches(documents, 7, 1), 40, dot).search(queries, 10)
    inverted = Inverted().build(shuffled_batches(documents, 7, 2), 40, dot).search(queries, 10)
    assert torch.allclose(exact[0], inverted[0], atol=1e-6)
    assert torch.equal(exact[1], inverted[1])


def test_empty_input_is_refused():
    with pytest.raises(ValueError, match="no documents"):
        InvertedSearch.from_batches([], 0)


INDEXES = [
    ExactIndex(),
    Inverted(),
    pytest.param(Seismic(), id="seismic"),
    pytest.param(Faiss(), id="faiss"),
]


@pytest.mark.parametrize("config", INDEXES, ids=type)
@pytest.mark.parametrize(
    ("batches", "error"),
    [
        ([[0, 2]], r"1 of the 3 documents were never given \(row 1 first\)"),
        ([[0, 1, 1], [2]], "document row 1 is given twice"),
        ([[0, 1], [2, 1]], "document row 1 is given twice"),
        ([[0, 1, 3]], r"document row 3 is outside 0\.\.2"),
    ],
    ids=["missing", "twice-in-a-batch", "twice-across-batches", "beyond"],
)
def test_batches_must_hold_every_document_once(config, batches, error):
    """A document left out would never be found, or score 0 for every query (exact search:
    whatever its unwritten row held); one given twice would be counted twice."""
    if isinstance(config, Seismic | Faiss):
        pytest.importorskip("seismic" if isinstance(config, Seismic) else "faiss")
    generator = torch.Generator().manual_seed(0)
    given = [(torch.tensor(rows), random_sparse(generator, len(rows), 8, 0.5)) for rows in batches]
    with pytest.raises(ValueError, match=error):
        config.build(given, 3, lambda q, d: q @ d.T)


def test_seismic_with_generous_settings_finds_the_exact_top_k():
    pytest.importorskip("seismic", reason="pyseismic-lsr is the optional [seismic] extra")
    generator = torch.Generator().manual_seed(3)
    documents = random_sparse(generator, 300, 200, 0.05)
    queries = random_sparse(generator, 12, 200, 0.1)
    seismic = Seismic(
        n_postings=10_000, centroid_fraction=1.0, summary_energy=1.0, query_cut=200, heap_factor=1.0
    )
    dot = lambda q, d: q @ d.T  # noqa: E731
    batches = ((rows, sparse_rows(reps)) for rows, reps in shuffled_batches(documents, 64, 0))
    approximate = seismic.build(batches, 300, dot).search(sparse_rows(queries), 10)
    exact = (queries @ documents.T).topk(10, dim=1)
    assert torch.allclose(approximate[0], exact.values, atol=1e-3)  # Seismic stores half floats
    found = [
        set(a) & set(e)
        for a, e in zip(approximate[1].tolist(), exact.indices.tolist(), strict=True)
    ]
    assert sum(map(len, found)) / exact.indices.numel() >= 0.99


def test_seismic_without_its_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "seismic", None)  # makes `import seismic` fail
    with pytest.raises(ConfigError, match=r"pip install 'xpretrieval\[seismic\]'"):
        Seismic().build(iter([]), 0, lambda q, d: q @ d.T)


@pytest.mark.parametrize(
    "config",
    [ExactIndex(), Inverted(), pytest.param(Seismic(query_cut=200, heap_factor=1.0), id="seismic")],
    ids=type,
)
def test_saved_indexes_search_like_the_built_ones(config, tmp_path):
    if isinstance(config, Seismic):
        pytest.importorskip("seismic", reason="pyseismic-lsr is the optional [seismic] extra")
    generator = torch.Generator().manual_seed(5)
    documents = random_sparse(generator, 50, 40, 0.2)
    queries = random_sparse(generator, 4, 40, 0.3)
    provenance = index_provenance(None, {f"d{i}": f"text {i}" for i in range(50)})
    dot = lambda q, d: q @ d.T  # noqa: E731
    built = config.build(shuffled_batches(documents, 16, 0), 50, dot)
    save_index(config, built, tmp_path / "index", provenance)
    opened = open_index(config, tmp_path / "index", provenance, dot)
    for got, expected in zip(opened.search(queries, 5), built.search(queries, 5), strict=True):
        assert torch.equal(got, expected)
    assert opened.statistics()["documents"] == 50


def test_a_saved_index_is_refused_for_other_documents_or_another_kind(tmp_path):
    generator = torch.Generator().manual_seed(6)
    documents = random_sparse(generator, 10, 8, 0.5)
    built = Inverted().build(shuffled_batches(documents, 4, 0), 10, None)
    texts = {f"d{i}": f"text {i}" for i in range(10)}
    save_index(Inverted(), built, tmp_path / "index", index_provenance(None, texts))
    other_ids = index_provenance(None, {f"x{i}": f"text {i}" for i in range(10)})
    with pytest.raises(ConfigError, match="the documents' ids differ"):
        open_index(Inverted(), tmp_path / "index", other_ids, None)
    edited = index_provenance(None, {**texts, "d3": "text 3, edited"})
    with pytest.raises(ConfigError, match="the documents' texts differ"):
        open_index(Inverted(), tmp_path / "index", edited, None)
    with pytest.raises(ConfigError, match="holds a Inverted index but the config's index is"):
        open_index(ExactIndex(), tmp_path / "index", index_provenance(None, texts), None)
    with pytest.raises(ConfigError, match="not a saved index"):
        open_index(Inverted(), tmp_path, index_provenance(None, {}), None)
