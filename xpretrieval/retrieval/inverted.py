"""An inverted index over sparse representations (SPLADE term weights): exact top-k from the
posting lists, never building a [n_documents, vocab] matrix."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse
import torch
from torch import Tensor

from xpretrieval.core.progress import progress
from xpretrieval.models.encoding import Reps, sparse_rows
from xpretrieval.retrieval.coverage import RowCoverage


class InvertedSearch:
    """For every vocabulary term, the documents where it is active and their weights.

    Stored as a SciPy CSC matrix `[n_documents, vocab]`: column t holds term t's posting list
    (document rows and weights); search multiplies queries by these lists, term by term.
    """

    def __init__(self, postings: scipy.sparse.csc_matrix) -> None:
        self.postings = postings

    @classmethod
    def from_batches(
        cls, batches: Iterable[tuple[Tensor, Reps]], n_documents: int
    ) -> InvertedSearch:
        """Index `(rows, reps)` batches of `[batch, vocab]` weights (sparse rows, or dense
        tensors whose non-zeros are kept), covering document rows 0..n_documents-1."""
        rows, parts, coverage = [], [], RowCoverage(n_documents)
        for batch_rows, reps in batches:
            rows.append(coverage.add(batch_rows))
            parts.append(sparse_rows(reps))
        if not rows:
            raise ValueError("cannot build an inverted index from no documents")
        coverage.check_complete()
        stacked = scipy.sparse.vstack(parts, format="csr")
        del parts  # each step below holds two copies of the postings at most
        in_order = stacked[np.argsort(np.concatenate(rows))]
        del stacked
        return cls(in_order.tocsc())

    FILE = "postings.npz"

    def save(self, folder: Path) -> None:
        """Write the posting lists as `postings.npz` (SciPy's sparse format) into `folder`."""
        scipy.sparse.save_npz(folder / self.FILE, self.postings)

    @classmethod
    def load(cls, folder: Path) -> InvertedSearch:
        return cls(scipy.sparse.load_npz(folder / cls.FILE).tocsc())

    @cached_property
    def _by_term(self) -> scipy.sparse.csr_matrix:
        """[vocab, n_documents]: row t is term t's postings, as the sparse product reads them
        (converted once, on the first search)."""
        return self.postings.T.tocsr()

    @property
    def n_documents(self) -> int:
        return self.postings.shape[0]

    @property
    def n_postings(self) -> int:
        return self.postings.nnz

    def statistics(self) -> dict[str, float]:
        arrays = (self.postings.indptr, self.postings.indices, self.postings.data)
        return {
            "documents": self.n_documents,
            "doc_active_dims": self.n_postings / self.n_documents,
            "postings": self.n_postings,
            "megabytes": sum(array.nbytes for array in arrays) / 2**20,
        }

    def search(self, queries: Reps, k: int, query_chunk: int = 256) -> tuple[Tensor, Tensor]:
        """The k best documents of each `[vocab]` query row by dot product: (scores, rows).

        Each chunk of queries is multiplied by the posting lists (SciPy's compiled sparse
        product accumulates every query's terms over their postings), so only a
        `[query_chunk, n_documents]` score block is ever dense.
        """
        k = min(k, self.n_documents)
        by_term = self._by_term
        weights = sparse_rows(queries)
        scores = np.empty((weights.shape[0], k), dtype=np.float32)
        rows = np.empty((weights.shape[0], k), dtype=np.int64)
        starts = range(0, weights.shape[0], query_chunk)
        for start in progress(starts, desc="search", unit="block"):
            block = (weights[start : start + query_chunk] @ by_term).toarray()
            best = np.argpartition(-block, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(block, best, axis=1), axis=1, kind="stable")
            best = np.take_along_axis(best, order, axis=1)
            rows[start : start + len(block)] = best
            scores[start : start + len(block)] = np.take_along_axis(block, best, axis=1)
        return torch.from_numpy(scores), torch.from_numpy(rows)
