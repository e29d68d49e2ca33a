"""Sparse retrieval on SciFact: xpretrieval's inverted index against a SciPy CSR product and
against Seismic (pyseismic-lsr), measured in the same run on the same SPLADE vectors.

Every index starts from what the encoder produces (dense batches of document vectors, a dense
query matrix). Prints index build time, queries/s (single thread for all three) and recall@10
against the exact top-10. The vectors come from `--model` (a trained SPLADE checkpoint), or by
default from all-MiniLM-L6-v2 with a new MLM head pruned to SPLADE++-like sizes (256 active
terms per document, 64 per query): real texts, realistic index sizes, untrained term choices.
They are cached in benchmarks/.cache/ so repeated runs skip the encoding.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from xpretrieval import load
from xpretrieval.data import Split
from xpretrieval.models import Splade
from xpretrieval.models.encoding import encode_batches
from xpretrieval.retrieval import InvertedIndex, Seismic

CACHE = Path(__file__).parent / ".cache"


def encoded(model: str, batch_size: int) -> tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix]:
    """SciFact test documents and queries as sparse `[n, vocab]` matrices (cached)."""
    key = hashlib.sha1(model.encode()).hexdigest()[:10]
    path = CACHE / f"scifact-{key}.npz"
    if path.is_file():
        data = np.load(path, allow_pickle=False)
        return tuple(  # type: ignore[return-value]
            scipy.sparse.csr_matrix(
                (data[f"{p}_data"], data[f"{p}_indices"], data[f"{p}_indptr"]),
                shape=tuple(data[f"{p}_shape"]),
            )
            for p in ("docs", "queries")
        )
    if Path(model).is_dir():
        encoder = load(model).eval()
    else:
        encoder = (
            Splade(name_or_path=model, doc_max_active_dims=256, query_max_active_dims=64)
            .build()
            .eval()
        )
    collection = Split(ir_datasets="beir/scifact/test").load()
    matrices = []
    for encode, texts in (
        (encoder.forward_documents, list(collection.documents.values())),
        (encoder.forward_queries, list(collection.queries.values())),
    ):
        rows, parts = [], []
        for batch_rows, reps in encode_batches(
            encode, texts, batch_size, torch.device("cpu"), desc="encode"
        ):
            rows.append(batch_rows.numpy())
            parts.append(scipy.sparse.csr_matrix(reps.numpy()))
        order = np.argsort(np.concatenate(rows))
        matrices.append(scipy.sparse.vstack(parts).tocsr()[order])
    CACHE.mkdir(exist_ok=True)
    arrays = {}
    for name, matrix in zip(("docs", "queries"), matrices, strict=True):
        arrays.update({f"{name}_{a}": getattr(matrix, a) for a in ("data", "indices", "indptr")})
        arrays[f"{name}_shape"] = np.array(matrix.shape)
    np.savez(path, **arrays)
    return matrices[0], matrices[1]


def batches(matrix: scipy.sparse.csr_matrix, size: int = 256):
    """`(rows, dense reps)` batches, as the indexes receive them from the encoder."""
    for start in range(0, matrix.shape[0], size):
        block = matrix[start : start + size]
        yield torch.arange(start, start + block.shape[0]), torch.from_numpy(block.toarray())


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def scipy_top_k(docs: scipy.sparse.csr_matrix, queries: torch.Tensor, k: int):
    """The peer: the encoder's query vectors as a CSR matrix, a sparse matrix product with the
    documents, then the k best of each row."""
    scores = (scipy.sparse.csr_matrix(queries.numpy()) @ docs.T).toarray()
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    hits = sum(len(set(a) & set(e)) for a, e in zip(found.tolist(), exact.tolist(), strict=True))
    return hits / exact.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    docs, queries = encoded(args.model, args.batch_size)
    torch.set_num_threads(1)  # the three searches are compared on one thread each
    n_docs, vocab = docs.shape
    print(
        f"SciFact test: {n_docs} documents ({docs.nnz / n_docs:.0f} active terms each), "
        f"{queries.shape[0]} queries ({queries.nnz / queries.shape[0]:.0f} active), vocab {vocab}"
    )
    compare(docs, queries, args.repeats)


def compare(
    docs: scipy.sparse.csr_matrix, queries: scipy.sparse.csr_matrix, repeats: int
) -> dict[str, float]:
    """Build and search the three indexes on the same vectors; prints the table and returns
    queries/s of each and the ratios."""
    n_docs = docs.shape[0]
    dense_queries = torch.from_numpy(queries.toarray())  # as the encoder gives them
    exact = scipy_top_k(docs, dense_queries, 10)

    ours, ours_build = timed(lambda: InvertedIndex.from_batches(batches(docs), n_docs))
    peer_docs, scipy_build = timed(
        lambda: scipy.sparse.vstack([scipy.sparse.csr_matrix(r.numpy()) for _, r in batches(docs)])
    )
    seismic_config = Seismic(threads=1)
    seismic, seismic_build = timed(lambda: seismic_config.build(batches(docs), n_docs, None))

    ours_time = min(timed(lambda: ours.search(dense_queries, 10))[1] for _ in range(repeats))
    scipy_time = min(
        timed(lambda: scipy_top_k(peer_docs, dense_queries, 10))[1] for _ in range(repeats)
    )
    seismic_time = min(timed(lambda: seismic.search(dense_queries, 10))[1] for _ in range(repeats))
    ours_rows = ours.search(dense_queries, 10)[1].numpy()
    seismic_rows = seismic.search(dense_queries, 10)[1].numpy()

    n = queries.shape[0]
    print(f"{'':24}{'build s':>10}{'queries/s':>12}{'recall@10':>11}")
    for name, build, search, rows in (
        ("xpretrieval inverted", ours_build, ours_time, ours_rows),
        ("scipy CSR product", scipy_build, scipy_time, exact),
        ("seismic (approximate)", seismic_build, seismic_time, seismic_rows),
    ):
        print(f"{name:24}{build:10.3f}{n / search:12.1f}{recall(rows, exact):11.4f}")
    print(
        f"ratios, xpretrieval / peer: queries/s vs scipy {scipy_time / ours_time:.2f}, "
        f"vs seismic {seismic_time / ours_time:.2f}; build time vs seismic "
        f"{ours_build / seismic_build:.2f}"
    )
    return {
        "xpretrieval_queries_per_second": n / ours_time,
        "scipy_queries_per_second": n / scipy_time,
        "seismic_queries_per_second": n / seismic_time,
        "ratio_vs_scipy": scipy_time / ours_time,
        "ratio_vs_seismic": seismic_time / ours_time,
    }


if __name__ == "__main__":
    main()
