"""Exact dense search: xpretrieval's exact index (chunked matrix products and a running top-k)
against faiss's `IndexFlatIP`, the reference exact inner-product index, in the same run on
the same unit vectors (all-MiniLM-L6-v2's size, 384), the same k and the same threads.

Prints queries/s of both, their ratio, and how many of faiss's top-k ids ours returns (ties
aside, 1.0). Writes benchmarks/results/dense_search.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from xpretrieval.retrieval.index import ExactIndex

RESULTS = Path(__file__).parent / "results"


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def compare(documents: np.ndarray, queries: np.ndarray, k: int, repeats: int = 3) -> dict:
    """Median queries/s of each engine over `repeats` searches, after one warm-up search."""
    ours = ExactIndex().build(
        [(torch.arange(len(documents)), torch.from_numpy(documents))],
        len(documents),
        lambda q, d: q @ d.T,
    )
    flat = faiss.IndexFlatIP(documents.shape[1])
    flat.add(documents)
    searches = {
        "xpretrieval": lambda: ours.search(torch.from_numpy(queries), k)[1].numpy(),
        "faiss": lambda: flat.search(queries, k)[1],
    }
    rates, found = {}, {}
    for name, search in searches.items():
        found[name] = search()  # warm-up
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            search()
            seconds.append(time.perf_counter() - start)
        rates[name] = len(queries) / float(np.median(seconds))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    documents = unit_vectors(args.documents, args.dim, seed=0)
    queries = unit_vectors(args.queries, args.dim, seed=1)
    figures = compare(documents, queries, args.k)
    RESULTS.mkdir(exist_ok=True)
    result = {"settings": vars(args), "dense_search": figures}
    (RESULTS / "dense_search.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"exact dense search queries/s ({args.documents} x {args.dim}, k={args.k}, "
        f"{args.threads} threads)   xpretrieval {figures['xpretrieval_queries_per_second']:9.1f}"
        f"   faiss IndexFlatIP {figures['faiss_queries_per_second']:9.1f}   ratio "
        f"{figures['ratio']:.2f}   top-k agreement {figures['top_k_agreement']:.3f}"
    )


if __name__ == "__main__":
    main()
