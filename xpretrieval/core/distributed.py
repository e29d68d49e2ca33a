"""Data-parallel training over processes with torch.distributed (`torchrun`): NCCL on GPUs,
Gloo on CPUs, one process per device.

Every process draws the same global batch from the seed. With cross-device negatives (the
default), each process encodes its own contiguous slice of the batch's query and document
texts, the slices are gathered in order, and every process computes the loss of the whole
batch exactly as one process would (same layout, same in-batch negatives, same FLOPS over the
global batch). The gather's gradient is the local slice of the gradient each process already
holds, so summing gradients over processes gives the single-process gradient. Without
cross-device negatives, each process trains on its slice of the records and gradients are
averaged (classic data parallelism: in-batch negatives stay within a process).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when alone)."""

    rank: int = 0
    size: int = 1

    @property
    def parallel(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """The process that logs, validates, checkpoints and evaluates."""
        return self.rank == 0

    def bounds(self, n: int) -> tuple[int, int]:
        """[start, stop) of this process's contiguous share of n items (shares differ by at
        most one item; the first `n % size` processes take one more)."""
        share, extra = divmod(n, self.size)
        start = self.rank * share + min(self.rank, extra)
        return start, start + share + (self.rank < extra)

    def shard(self, items: Sequence[T]) -> Sequence[T]:
        start, stop = self.bounds(len(items))
        return items[start:stop]


ALONE = World()  # one process: rank 0 of 1

# long enough for the main process to validate or checkpoint while the others wait for it
# (NCCL's own default, 10 minutes, would end the run during a long validation)
TIMEOUT = timedelta(hours=2)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start() -> World:
    """Join the process group that `torchrun` describes in the environment (once): Gloo for
    CPU tensors, NCCL for GPU tensors where there are GPUs."""
    if launched_by_torchrun() and not dist.is_initialized():
        gpus = torch.cuda.is_available() and dist.is_nccl_available()
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if gpus else "gloo", timeout=TIMEOUT)
    return world()


def local_device(device: torch.device) -> torch.device:
    """This process's device: with several processes on GPUs, its own (LOCAL_RANK)."""
    if device.type != "cuda" or not world().parallel:
        return device
    local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(local)
    return local


def world() -> World:
    """The current process group, or a world of one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def broadcast(value: Any) -> Any:
    """Rank 0's `value` on every process (any picklable object)."""
    if not world().parallel:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every process reaches this point."""
    if world().parallel:
        dist.barrier()


def any_process(*flags: bool) -> list[bool]:
    """Each flag, true on every process when it is true on any (one small all-reduce)."""
    if not world().parallel:
        return list(flags)
    values = torch.tensor([float(f) for f in flags])
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v) for v in values]


def average(values: dict[str, Tensor]) -> dict[str, Tensor]:
    """The mean over processes of each 0-d tensor."""
    if not values or not world().parallel:
        return values
    stacked = torch.stack([v.float() for v in values.values()])
    dist.all_reduce(stacked)
    stacked /= world().size
    return dict(zip(values, stacked, strict=True))


def gather_rows(local: Tensor) -> Tensor:
    """The rows of every process, in rank order (the global batch's layout when each holds
    its contiguous share). Trailing dimensions are padded to the largest (zeros)."""
    if not world().parallel:
        return local
    return _GatherRows.apply(local)


class _GatherRows(torch.autograd.Function):
    """All-gather whose backward returns this process's rows of the incoming gradient: every
    process computes the same loss from the gathered rows, so that slice already is the
    gradient of its own rows (no communication; the gradient sum over processes follows)."""

    @staticmethod
    def forward(ctx: Any, local: Tensor) -> Tensor:
        size = dist.get_world_size()
        shape = torch.tensor(local.shape, dtype=torch.long)
        shapes = [torch.empty_like(shape) for _ in range(size)]
        dist.all_gather(shapes, shape)
        largest = torch.stack(shapes).amax(dim=0).tolist()
        padding = []
        for have, want in zip(reversed(local.shape), reversed(largest), strict=True):
            padding += [0, want - have]
        parts = [local.new_empty(largest) for _ in range(size)]
        dist.all_gather(parts, F.pad(local.contiguous(), padding))
        rows = [int(s[0]) for s in shapes]
        rank = dist.get_rank()
        ctx.start, ctx.shape = sum(rows[:rank]), tuple(local.shape)
        return torch.cat([part[:n] for part, n in zip(parts, rows, strict=True)])

    @staticmethod
    def backward(ctx: Any, gradient: Tensor) -> Tensor:
        mine = gradient[ctx.start : ctx.start + ctx.shape[0]]
        return mine[tuple(slice(0, n) for n in ctx.shape)]


def reduce_gradients(parameters: Iterable[nn.Parameter], mean: bool) -> None:
    """Sum (or average) every gradient over the processes, one flat all-reduce per dtype."""
    if not world().parallel:
        return
    grads: dict[torch.dtype, list[Tensor]] = {}
    for parameter in parameters:
        if not parameter.requires_grad:
            continue
        if parameter.grad is None:  # unused here (e.g. an empty share): another may have one
            parameter.grad = torch.zeros_like(parameter)
        grads.setdefault(parameter.grad.dtype, []).append(parameter.grad)
    for same_type in grads.values():
        flat = torch.cat([g.flatten() for g in same_type])
        dist.all_reduce(flat)
        if mean:
            flat /= world().size
        offset = 0
        for grad in same_type:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()


def broadcast_parameters(module: nn.Module) -> None:
    """Rank 0's weights on every process (randomly initialised heads included)."""
    if not world().parallel:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)
