"""Encode many texts in batches, without gradients, with a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from xpretrieval.device import Precision, autocast


def encode_texts(
    encode: Callable[[Sequence[str]], Tensor],
    texts: Sequence[str],
    batch_size: int,
    device: torch.device,
    precision: Precision = Precision.auto,
    desc: str = "encode",
) -> Tensor:
    """`encode` applied batch by batch; rows in the order of `texts`, as float32.

    Texts are batched by decreasing length, which cuts padding (and shows an out-of-memory
    error on the first batch rather than the last).
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    parts = []
    with torch.inference_mode(), autocast(device, precision):
        for start in tqdm(
            range(0, len(order), batch_size), desc=desc, unit="batch", leave=False, disable=None
        ):
            chunk = order[start : start + batch_size]
            parts.append(encode([texts[i] for i in chunk]).float())
    reps = torch.cat(parts)
    inverse = torch.empty(len(order), dtype=torch.long, device=reps.device)
    inverse[torch.tensor(order, device=reps.device)] = torch.arange(len(order), device=reps.device)
    return reps[inverse]
