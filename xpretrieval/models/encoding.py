"""Encode many texts without gradients, with a progress bar: each text tokenised once, a window
of texts at a time, in batches by length under a batch size and a token budget."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse
import torch
from torch import Tensor

from xpretrieval.core.checks import check_range
from xpretrieval.core.device import Precision, autocast
from xpretrieval.core.progress import progress

Reps = Tensor | scipy.sparse.csr_matrix  # representations: a tensor, or sparse rows' non-zeros

# texts tokenised at once: their token counts are known before they are batched, and the token
# ids of a collection are never all held at once
TOKENIZE_WINDOW = 4096


@dataclass(frozen=True)
class Batching:
    """How encoding groups texts: at most `batch_size` texts a batch and, with `max_tokens`, at
    most that many padded tokens (its texts × the longest one's tokens), so short texts go in
    larger batches and long ones in smaller; a text longer than the budget goes alone."""

    batch_size: int = 32
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        check_range("batch_size", self.batch_size, at_least=1)
        check_range("max_batch_tokens", self.max_tokens, at_least=1, optional=True)

    def cut(self, lengths: Sequence[int]) -> Iterator[slice]:
        """Consecutive batches of texts of these token counts, sorted longest first."""
        start = 0
        while start < len(lengths):
            count = self.batch_size
            if self.max_tokens is not None:  # the first text is the longest: all pad to it
                count = min(count, max(1, self.max_tokens // max(1, lengths[start])))
            yield slice(start, start + count)
            start += count


@dataclass(frozen=True)
class TextEncoder:
    """One side (queries or documents) of a bi-encoder as encoding runs it: `tokenize` turns
    texts into token sequences (`len`: the tokens a batch pads to), `forward` represents a
    batch of them; `prepare`, if any, sees all the texts first (an int8 graph calibrates on
    a sample of them)."""

    tokenize: Callable[[Sequence[str]], Sequence[Sized]]
    forward: Callable[[Sequence[Any]], Tensor]
    prepare: Callable[[Sequence[str]], None] | None = None


def encode_batches(
    encoder: TextEncoder,
    texts: Sequence[str],
    batching: Batching,
    device: torch.device,
    precision: Precision = Precision.auto,
    desc: str = "encode",
) -> Iterator[tuple[Tensor, Tensor]]:
    """`(rows, reps)` batch after batch: the positions in `texts` and their float32 vectors.

    Texts go longest first, which cuts padding (and shows an out-of-memory error on the first
    batch rather than the last). Indexes consume the batches one at a time, so the collection's
    representations never need to be held at once.
    """
    if encoder.prepare is not None:
        encoder.prepare(texts)
    batches = _token_batches(encoder, texts, batching)
    with torch.inference_mode(), autocast(device, precision):
        for rows, tokens in progress(batches, desc, len(texts), "text", size=_texts_in):
            yield torch.tensor(rows), encoder.forward(tokens).float()


def _token_batches(
    encoder: TextEncoder, texts: Sequence[str], batching: Batching
) -> Iterator[tuple[list[int], list[Any]]]:
    """Each batch's rows in `texts` and their token sequences. One pass over the texts orders
    them by characters (sequential for documents on disk, 8 bytes a text); each window of that
    order is tokenised in one call and ordered by tokens, then cut into batches."""
    lengths = np.fromiter((len(text) for text in texts), dtype=np.int64, count=len(texts))
    order = np.argsort(-lengths, kind="stable")  # longest first, ties in their given order
    window = max(TOKENIZE_WINDOW, batching.batch_size)
    for start in range(0, len(order), window):
        rows = order[start : start + window]
        tokens = encoder.tokenize([texts[i] for i in rows])
        counts = np.fromiter((len(sequence) for sequence in tokens), np.int64, len(tokens))
        by_tokens = np.argsort(-counts, kind="stable")
        for batch in batching.cut(counts[by_tokens]):
            chosen = by_tokens[batch]
            yield rows[chosen].tolist(), [tokens[i] for i in chosen]


def _texts_in(batch: tuple[list[int], list[Any]]) -> int:
    """How many texts a batch of `_token_batches` holds (progress counts texts)."""
    return len(batch[0])


def encode_texts(
    encoder: TextEncoder,
    texts: Sequence[str],
    batching: Batching,
    device: torch.device,
    precision: Precision = Precision.auto,
    desc: str = "encode",
    sparse: bool = False,
) -> Reps:
    """`encoder` applied batch by batch; all rows, in the order of `texts`, as float32.

    With `sparse`, term-weight representations (SPLADE) are kept as each batch's non-zeros
    once encoded (SciPy CSR rows), so `[n_texts, vocab]` is never dense (MS MARCO's 6,980 dev
    queries would take 0.85 GB) and inverted indexes search the rows as they are.
    """
    rows, reps = [], []
    for batch_rows, batch in encode_batches(encoder, texts, batching, device, precision, desc):
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
