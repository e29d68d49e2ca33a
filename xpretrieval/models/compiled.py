"""`model.compile`: a module's passes without gradients through torch.compile with inductor's
freezing, which makes the weights constants of the compiled code, so that their bf16 casts and
oneDNN layouts are made once rather than at every call (all-MiniLM-L6-v2, bf16 encoding on an
AMX CPU: 1.18x over compiling without it), for a second copy of the weights in memory.

Constants go stale when the weights change (validation between training steps, a loaded
state): a frozen module's code is checked against its weights' versions and storage at each
pass and, once they move, compiled again without freezing, reading the weights as they are, so
that a model in training is compiled twice at most.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import torch
from torch import nn
from torch._inductor import config as inductor_config

logger = logging.getLogger(__name__)


class FrozenCompiled:
    """`module` compiled (dynamic shapes) and called with freezing on, which inductor reads
    while it traces and compiles, at the calls; its attributes (`config`) read through."""

    def __init__(self, module: nn.Module) -> None:
        self._compiled = torch.compile(module, dynamic=True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with inductor_config.patch(freezing=True):
            return self._compiled(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._compiled, name)


def weights_state(module: nn.Module) -> tuple[tuple[int, int], ...]:
    """What changes when `module`'s weights do: each tensor's version (bumped by every in-place
    write: an optimizer step, `load_state_dict`) and storage (a `.to()` swaps it)."""
    return tuple(
        (0 if tensor.is_inference() else tensor._version, tensor.data_ptr())
        for tensor in itertools.chain(module.parameters(), module.buffers())
    )


class CompiledModules:
    """Each module's compiled code: frozen on its first pass, compiled again without freezing
    if its weights then change."""

    def __init__(self) -> None:
        # by module: the weights' state its frozen code holds (None once unfrozen), the code
        self._held: dict[int, tuple[tuple[tuple[int, int], ...] | None, Any]] = {}

    def __call__(self, module: nn.Module) -> Any:
        held = self._held.get(id(module))
        if held is None:
            logger.info("Compiling %s (model.compile, weights frozen)", type(module).__name__)
            held = self._held[id(module)] = (weights_state(module), FrozenCompiled(module))
        elif held[0] is not None and held[0] != weights_state(module):
            logger.info(
                "%s's weights changed: compiling it again, not frozen", type(module).__name__
            )
            torch.compiler.reset()  # the cached code would hand back the old weights
            held = self._held[id(module)] = (None, torch.compile(module, dynamic=True))
        return held[1]

    def __bool__(self) -> bool:
        return bool(self._held)
