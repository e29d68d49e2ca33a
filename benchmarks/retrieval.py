"""Retrieval: exact sparse search with xpretrieval's inverted index against bm25s, a SciPy CSR
product and Seismic (approximate), and exact dense search against faiss `IndexFlatIP`, each
measured in one run on the same vectors, k and threads.

Sparse vectors: the BM25 weights bm25s computes for SciFact's documents (its own index,
unchanged), and queries as bm25s sees them (a count per query token), so all four engines
compute the same scores and bm25s runs on its own data; `--model` takes SPLADE vectors from a
checkpoint instead (bm25s left out). Every engine receives the vectors' non-zeros, as retrieval
hands an encoder's output to sparse indexes. Queries/s on one thread, recall@10 against the
exact top 10 and index build time. Dense: unit vectors of all-MiniLM-L6-v2's size (384),
top-k agreement with faiss.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import faiss
import numpy as np
import scipy.sparse
import torch

from benchmarks.common import (
    current_rss_gb,
    median_seconds,
    peak_rss_gb,
    reset_peak_rss,
    row,
    write_result,
)
from xpretrieval import load
from xpretrieval.data import Split
from xpretrieval.models.encoding import Batching, encode_texts
from xpretrieval.retrieval import InvertedSearch, Seismic
from xpretrieval.retrieval.index import ExactIndex

K = 10


def bm25_vectors(collection) -> tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix, Callable]:  # noqa: ANN001
    """SciFact as bm25s indexes it: documents' BM25 weights [docs, vocab], queries' token
    counts [queries, vocab], and bm25s's own search (its index, its query ids) for comparison."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(list(collection.documents.values())), show_progress=False)
    scores = retriever.scores
    vocab = len(scores["indptr"]) - 1  # the scored terms (bm25s's vocab also has "")
    by_term = scipy.sparse.csc_matrix(
        (scores["data"], scores["indices"], scores["indptr"]), shape=(scores["num_docs"], vocab)
    )
    tokens = bm25s.tokenize(
        list(collection.queries.values()), show_progress=False, return_ids=False
    )
    ids = [
        [retriever.vocab_dict[t] for t in query if t in retriever.vocab_dict] for query in tokens
    ]
    rows = np.repeat(np.arange(len(ids)), [len(q) for q in ids])
    queries = scipy.sparse.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, np.concatenate(ids).astype(np.int64))),
        shape=(len(ids), vocab),
    )  # duplicates add up, as bm25s adds a repeated token's scores

    def search() -> np.ndarray:
        found, _ = retriever.retrieve(ids, k=K, show_progress=False, n_threads=1)
        return np.asarray(found)

    return by_term.tocsr().astype(np.float32), queries, search


def splade_vectors(model: str, collection) -> tuple[scipy.sparse.csr_matrix, ...]:  # noqa: ANN001
    """Documents and queries encoded by a SPLADE checkpoint, as sparse matrices."""
    encoder = load(model).eval()
    cpu = torch.device("cpu")
    documents = list(collection.documents.values())
    queries = list(collection.queries.values())
    return (
        encode_texts(encoder.text_encoder(False), documents, Batching(32), cpu, sparse=True),
        encode_texts(encoder.text_encoder(True), queries, Batching(32), cpu, sparse=True),
    )


def batches(matrix: scipy.sparse.csr_matrix, size: int = 256) -> Iterator[tuple]:
    """`(rows, sparse rows)` batches, as retrieval hands the encoder's output to sparse indexes."""
    for start in range(0, matrix.shape[0], size):
        block = matrix[start : start + size]
        yield torch.arange(start, start + block.shape[0]), block


BUILDS = {  # each sparse engine's index, from the documents' vectors as an encoder yields them
    "xpretrieval inverted": lambda docs: InvertedSearch.from_batches(batches(docs), docs.shape[0]),
    "scipy CSR product": lambda docs: scipy.sparse.vstack(
        [reps for _, reps in batches(docs)], format="csr"
    ),
    "seismic (approximate)": lambda docs: Seismic(threads=1).build(
        batches(docs), docs.shape[0], None
    ),
}


def timed(function: Callable):  # noqa: ANN201
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def scipy_top_k(docs: scipy.sparse.csr_matrix, queries: scipy.sparse.csr_matrix) -> np.ndarray:
    """The peer: a sparse product of the query rows with the documents, then the K best of
    each row."""
    scores = (queries @ docs.T).toarray()
    top = np.argpartition(-scores, K - 1, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def recall(found: np.ndarray, scores: np.ndarray) -> float:
    """Recall@K against the exact scores, counting ties as hits: a returned document is
    right when its exact score reaches the K-th best of its query."""
    kth = -np.partition(-scores, K - 1, axis=1)[:, K - 1 : K]
    return float((np.take_along_axis(scores, found, axis=1) >= kth - 1e-6).mean())


def sparse(docs, queries, repeats: int, bm25s_search: Callable | None = None) -> dict:  # noqa: ANN001
    """Build and search every engine on the same vectors (one thread each); per engine:
    build seconds, queries/s, recall@10 against the exact top 10."""
    exact_scores = (queries @ docs.T).toarray()
    ours, ours_build = timed(lambda: BUILDS["xpretrieval inverted"](docs))
    seismic, seismic_build = timed(lambda: BUILDS["seismic (approximate)"](docs))
    engines = {
        "xpretrieval inverted": (ours_build, lambda: ours.search(queries, K)[1].numpy()),
        "scipy CSR product": (0.0, lambda: scipy_top_k(docs, queries)),
        "seismic (approximate)": (seismic_build, lambda: seismic.search(queries, K)[1].numpy()),
    }
    if bm25s_search is not None:
        engines["bm25s"] = (0.0, bm25s_search)
    figures = {}
    for name, (build, search) in engines.items():
        seconds = median_seconds(search, repeats)
        figures[name] = {
            "build_seconds": build,
            "queries_per_second": queries.shape[0] / seconds,
            "recall_at_10": recall(search(), exact_scores),
        }
    return figures


def dense(n_docs: int, n_queries: int, dim: int, k: int, repeats: int = 3) -> dict:
    """Exact dense search: queries/s of our exact index and faiss IndexFlatIP on the same unit
    vectors, and the fraction of faiss's top-k ids ours returns (ties aside, 1.0)."""
    documents, queries = unit_vectors(n_docs, dim, seed=0), unit_vectors(n_queries, dim, seed=1)
    ours = ExactIndex().build(
        [(torch.arange(n_docs), torch.from_numpy(documents))], n_docs, lambda q, d: q @ d.T
    )
    flat = faiss.IndexFlatIP(dim)
    flat.add(documents)
    searches = {
        "xpretrieval": lambda: ours.search(torch.from_numpy(queries), k)[1].numpy(),
        "faiss": lambda: flat.search(queries, k)[1],
    }
    rates = {name: n_queries / median_seconds(s, repeats) for name, s in searches.items()}
    found = {name: search() for name, search in searches.items()}
    overlap = np.mean(
        [
            len(set(a) & set(b)) / k
            for a, b in zip(found["xpretrieval"], found["faiss"], strict=True)
        ]
    )
    return {
        "xpretrieval_queries_per_second": rates["xpretrieval"],
        "faiss_queries_per_second": rates["faiss"],
        "ratio": rates["xpretrieval"] / rates["faiss"],
        "top_k_agreement": float(overlap),
    }


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build_memory(engine: str, vectors: Path) -> float:
    """Peak resident memory (GB) that building `engine`'s index adds to a process that holds
    the documents' vectors (read from `vectors`, a SciPy .npz)."""
    docs = scipy.sparse.load_npz(vectors).tocsr()
    reset_peak_rss()
    before = current_rss_gb()
    index = BUILDS[engine](docs)
    assert index is not None
    return peak_rss_gb() - before


def index_memory(docs: scipy.sparse.csr_matrix) -> dict[str, float]:
    """`build_memory` of every sparse engine, each in a fresh process."""
    added = {}
    with tempfile.TemporaryDirectory() as folder:
        vectors = Path(folder) / "docs.npz"
        scipy.sparse.save_npz(vectors, docs)
        for engine in BUILDS:
            command = [sys.executable, "-m", "benchmarks.retrieval", "--build-memory", engine]
            command += ["--vectors", str(vectors)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            added[engine] = float(output.strip().splitlines()[-1])
    return added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="a SPLADE checkpoint (default: BM25)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dense-documents", type=int, default=200_000)
    parser.add_argument("--dense-queries", type=int, default=1_000)
    parser.add_argument("--build-memory", choices=list(BUILDS), help=argparse.SUPPRESS)
    parser.add_argument("--vectors", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_memory:  # a child process of index_memory
        print(build_memory(args.build_memory, args.vectors))
        return
    collection = Split(ir_datasets="beir/scifact/test").load()
    if args.model is None:
        docs, queries, bm25s_search = bm25_vectors(collection)
        source = "BM25 weights (bm25s)"
    else:
        (docs, queries), bm25s_search = splade_vectors(args.model, collection), None
        source = f"SPLADE vectors of {args.model}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the sparse searches are compared on one thread each
    engines = sparse(docs, queries, args.repeats, bm25s_search)
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    flat = dense(args.dense_documents, args.dense_queries, 384, 100)
    ours = engines["xpretrieval inverted"]["queries_per_second"]
    rows = [
        row(
            f"sparse search ({source}), 1 thread",
            "queries/s",
            ours,
            figure["queries_per_second"],
            f"{name} (recall@10 {figure['recall_at_10']:.3f})",
        )
        for name, figure in engines.items()
        if name != "xpretrieval inverted"
    ]
    memory = index_memory(docs)
    rows += [
        row(
            f"sparse index build ({docs.shape[0]} documents), peak RSS added",
            "GB",
            memory["xpretrieval inverted"],
            added,
            engine,
        )
        for engine, added in memory.items()
        if engine != "xpretrieval inverted"
    ]
    rows.append(
        row(
            f"exact dense search ({args.dense_documents} x 384, k=100), {threads} threads",
            "queries/s",
            flat["xpretrieval_queries_per_second"],
            flat["faiss_queries_per_second"],
            f"faiss IndexFlatIP (top-k agreement {flat['top_k_agreement']:.3f})",
        )
    )
    result = {
        "settings": {**vars(args), "sparse_source": source, "documents": docs.shape[0]},
        "sparse_search": engines,
        "dense_search": flat,
        "index_build_peak_rss_gb": memory,
        "rows": rows,
    }
    write_result("retrieval", result)


if __name__ == "__main__":
    main()
