"""Index batches must hold each document row exactly once: a document left out would never
be found (or score 0 for every query), one given twice would be counted twice."""

from __future__ import annotations

import numpy as np
from torch import Tensor


class RowCoverage:
    """The document rows 0..n_documents-1 seen so far in an index's batches; refuses a row out
    of range or given twice as soon as it comes, and any row missing at the end."""

    def __init__(self, n_documents: int) -> None:
        self.seen = np.zeros(n_documents, dtype=bool)

    def add(self, rows: Tensor) -> np.ndarray:
        """Record a batch's rows; returns them as a NumPy array."""
        rows = rows.cpu().numpy()
        n_documents = len(self.seen)
        outside = rows[(rows < 0) | (rows >= n_documents)]
        if len(outside):
            raise ValueError(f"document row {outside[0]} is outside 0..{n_documents - 1}")
        unique, counts = np.unique(rows, return_counts=True)
        repeated = np.concatenate([unique[counts > 1], unique[self.seen[unique]]])
        if len(repeated):
            raise ValueError(f"document row {repeated[0]} is given twice")
        self.seen[rows] = True
        return rows

    def check_complete(self) -> None:
        """Refuse the batches if some row never came."""
        missing = np.flatnonzero(~self.seen)
        if len(missing):
            raise ValueError(
                f"{len(missing)} of the {len(self.seen)} documents were never given "
                f"(row {missing[0]} first)"
            )
