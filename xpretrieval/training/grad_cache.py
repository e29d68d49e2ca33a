"""Cached-representation gradients (GradCache; Gao et al., RepL4NLP 2021, "Scaling Deep
Contrastive Learning Batch Size under Memory Limited Setup").

A batch too large for one forward-backward pass is encoded micro-batch by micro-batch
without an autograd graph; the loss terms are computed once, on the whole batch, from
those cached representations, and their gradients are sent back through a second, graphed
encoding of each micro-batch. Every loss and regulariser thus sees the whole logical batch
(all in-batch negatives, FLOPS over every text), whatever the micro-batch size; the
random state of each micro-batch is replayed so that dropout masks match between passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

Encode = Callable[[Sequence[str]], Tensor]


@dataclass(frozen=True)
class CachedReps:
    """Representations encoded without a graph, ready to receive gradients, and how to
    re-encode each micro-batch exactly as it was."""

    reps: Tensor  # a leaf tensor that requires grad
    texts: Sequence[str]
    micro_batch_size: int
    random_states: list[tuple[Tensor, list[Tensor]]]


def encode_cached(encode: Encode, texts: Sequence[str], micro_batch_size: int) -> CachedReps:
    """`encode(texts)` micro-batch by micro-batch, without graph, recording random states."""
    states, chunks = [], []
    with torch.no_grad():
        for start in range(0, len(texts), micro_batch_size):
            states.append(_random_state())
            chunks.append(encode(texts[start : start + micro_batch_size]))
    reps = torch.cat(chunks).detach().requires_grad_(True)
    return CachedReps(reps, texts, micro_batch_size, states)


def backward_cached(encode: Encode, cached: CachedReps) -> None:
    """Re-encode each micro-batch with its graph and its recorded random state, and
    back-propagate the gradient that the loss left on the cached representations."""
    gradient = cached.reps.grad
    if gradient is None:  # no loss term used these representations
        return
    size = cached.micro_batch_size
    for index, start in enumerate(range(0, len(cached.texts), size)):
        with _replayed(cached.random_states[index]):
            reps = encode(cached.texts[start : start + size])
        reps.backward(gradient[start : start + size].to(reps.dtype))


def _random_state() -> tuple[Tensor, list[Tensor]]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return torch.get_rng_state(), cuda


@contextmanager
def _replayed(state: tuple[Tensor, list[Tensor]]) -> Iterator[None]:
    """Run with a recorded random state; the global random state is left as it was."""
    cpu, cuda = state
    devices = list(range(len(cuda)))
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(cpu)
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
        yield
