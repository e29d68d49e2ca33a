"""Encode many texts in batches, without gradients, with a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import scipy.sparse
import torch
from torch import Tensor

from xpretrieval.device import Precision, autocast
from xpretrieval.progress import progress

Reps = Tensor | scipy.sparse.csr_matrix  # representations: a tensor, or sparse rows' non-zeros


def encode_batches(
    encode: Callable[[Sequence[str]], Tensor],
    texts: Sequence[str],
    batch_size: int,
    device: torch.device,
    precision: Precision = Precision.auto,
    desc: str = "encode",
) -> Iterator[tuple[Tensor, Tensor]]:
    """`(rows, reps)` batch after batch: the positions in `texts` and their float32 vectors.

    Texts are batched by decreasing length, which cuts padding (and shows an out-of-memory
    error on the first batch rather than the last). Indexes consume the batches one at a
    time, so the collection's representations never need to be held at once.
    """
    # one pass over the texts (sequential for documents on disk); a NumPy order, 8 bytes a text
    lengths = np.fromiter((len(text) for text in texts), dtype=np.int64, count=len(texts))
    order = np.argsort(-lengths, kind="stable")  # longest first, ties in their given order
    with torch.inference_mode(), autocast(device, precision):
        starts = range(0, len(order), batch_size)
        for start in progress(starts, desc=desc, unit="batch"):
            rows = order[start : start + batch_size].tolist()
            yield torch.tensor(rows), encode([texts[i] for i in rows]).float()


def encode_texts(
    encode: Callable[[Sequence[str]], Tensor],
    texts: Sequence[str],
    batch_size: int,
    device: torch.device,
    precision: Precision = Precision.auto,
    desc: str = "encode",
    sparse: bool = False,
) -> Reps:
    """`encode` applied batch by batch; all rows, in the order of `texts`, as float32.

    With `sparse`, term-weight representations (SPLADE) are kept as each batch's non-zeros
    once encoded (SciPy CSR rows), so `[n_texts, vocab]` is never dense (MS MARCO's 6,980 dev
    queries would take 0.85 GB) and inverted indexes search the rows as they are.
    """
    rows, reps = [], []
    for batch_rows, batch in encode_batches(encode, texts, batch_size, device, precision, desc):
        rows.append(batch_rows)
        reps.append(sparse_rows(batch) if sparse else batch)
    order = torch.argsort(torch.cat(rows))
    return (
        scipy.sparse.vstack(reps, format="csr")[order.numpy()] if sparse else torch.cat(reps)[order]
    )


def sparse_rows(reps: Reps) -> scipy.sparse.csr_matrix:
    """Representations `[n, vocab]` as float32 CSR rows of their non-zeros; a dense tensor is
    scanned through torch's non-zero search, about 3x faster than SciPy's own conversion."""
    if scipy.sparse.issparse(reps):
        return scipy.sparse.csr_matrix(reps, dtype=np.float32)
    dense = reps.detach().float().cpu()
    rows, terms = dense.nonzero(as_tuple=True)
    pointers = np.zeros(dense.shape[0] + 1, dtype=np.int64)
    np.cumsum(torch.bincount(rows, minlength=dense.shape[0]).numpy(), out=pointers[1:])
    values = dense[rows, terms].numpy()
    return scipy.sparse.csr_matrix((values, terms.numpy(), pointers), shape=tuple(dense.shape))
