"""Encode many texts in batches, without gradients, with a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from xpretrieval.device import Precision, autocast
from xpretrieval.progress import progress


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
) -> Tensor:
    """`encode` applied batch by batch; all rows, in the order of `texts`, as float32."""
    batches = list(encode_batches(encode, texts, batch_size, device, precision, desc))
    rows = torch.cat([batch_rows for batch_rows, _ in batches])
    return torch.cat([reps for _, reps in batches])[torch.argsort(rows)]
