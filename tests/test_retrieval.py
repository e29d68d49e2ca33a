"""Exact search against a brute-force ranking, and TREC run files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xpretrieval.core.errors import DataError
from xpretrieval.data.run import read_trec_run, write_trec_run
from xpretrieval.models.encoding import Batching, TextEncoder, encode_texts
from xpretrieval.retrieval import exact_top_k


def dot(q, d):
    return q @ d.T


@settings(max_examples=40, deadline=None)
@given(
    n_queries=st.integers(1, 7),
    n_docs=st.integers(1, 40),
    k=st.integers(1, 50),
    query_chunk=st.integers(1, 8),
    doc_chunk=st.integers(1, 16),
    seed=st.integers(0, 10_000),
)
def test_chunked_top_k_equals_brute_force(n_queries, n_docs, k, query_chunk, doc_chunk, seed):
    generator = torch.Generator().manual_seed(seed)  # float64: BLAS rounding stays far below ties
    queries = torch.randn(n_queries, 4, generator=generator, dtype=torch.float64)
    documents = torch.randn(n_docs, 4, generator=generator, dtype=torch.float64)
    scores, rows = exact_top_k(dot, queries, documents, k, query_chunk, doc_chunk)
    expected = (queries @ documents.T).topk(min(k, n_docs), dim=1)
    assert torch.allclose(scores, expected.values)
    assert torch.equal(rows, expected.indices)


def test_encode_texts_restores_input_order():
    texts = ["a", "ccc", "bb", "dddd", ""]
    lengths = TextEncoder(list, lambda batch: torch.tensor([[float(len(t))] for t in batch]))
    reps = encode_texts(lengths, texts, Batching(2), torch.device("cpu"))
    assert reps.squeeze(1).tolist() == [1.0, 3.0, 2.0, 4.0, 0.0]


def test_sparse_encoding_keeps_the_non_zeros_in_input_order():
    texts = ["a", "ccc", "bb", "dddd", "", "ee"]

    def one_hot_length(batch):  # a weight 1 + len at term len: one non-zero, none for ""
        weights = torch.zeros(len(batch), 5)
        for i, text in enumerate(batch):
            if text:
                weights[i, len(text)] = 1.0 + len(text)
        return weights

    encoder, cpu = TextEncoder(list, one_hot_length), torch.device("cpu")
    dense = encode_texts(encoder, texts, Batching(4), cpu)
    sparse = encode_texts(encoder, texts, Batching(4), cpu, sparse=True)
    assert sparse.dtype == np.float32 and sparse.nnz == 5
    np.testing.assert_array_equal(sparse.toarray(), dense.numpy())


def test_trec_run_round_trip(tmp_path):
    run = {"q1": [("d2", 3.5), ("d1", 1.25)], "q2": [("d9", -0.5)]}
    write_trec_run(tmp_path / "run.trec", run, tag="test")
    assert (tmp_path / "run.trec").read_text().splitlines()[0] == "q1 Q0 d2 1 3.500000 test"
    assert read_trec_run(tmp_path / "run.trec") == run


def test_malformed_run_line_is_located(tmp_path):
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 2.0 tag\nq1 Q0 d2 2\n")
    with pytest.raises(DataError, match=r"run\.trec:2: expected 6 fields"):
        read_trec_run(tmp_path / "run.trec")
