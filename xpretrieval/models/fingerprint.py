"""A fingerprint of a model's weights: what saved indexes and exported graphs record, so that
they are never used with other weights."""

from __future__ import annotations

import hashlib
from typing import Any

import torch


def weights_fingerprint(model: Any) -> str | None:
    """SHA-1 of every tensor of the model's state (names, shapes, dtypes and bytes); None for
    a model without tensors."""
    if not isinstance(model, torch.nn.Module):
        return None
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
