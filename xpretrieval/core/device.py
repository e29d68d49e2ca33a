"""Pick the compute device and precision: CUDA, then Apple MPS, then CPU, unless overridden."""

from __future__ import annotations

import contextlib
import functools
import logging
from enum import Enum

import torch

from xpretrieval.core.errors import ConfigError

logger = logging.getLogger(__name__)


def resolve_device(name: str | None = None) -> torch.device:
    """`name` as given (`cpu`, `cuda:1`…) or, when None, the best available device."""
    if name is not None:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigError(
                f"device={name!r} is not a device name (cpu, cuda, cuda:1, mps)"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                f"device={name!r} but CUDA is not available on this machine; use device=cpu, "
                "or device=null to pick the best available"
            )
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(
                f"device={name!r} but this machine has {torch.cuda.device_count()} CUDA devices"
            )
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ConfigError(
                f"device={name!r} but Apple MPS is not available on this machine; use device=cpu"
            )
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Precision(Enum):
    """Numeric precision of forward passes; auto is bf16 autocast on a GPU that has it.

    Lower-case names, because configs select members by name (`precision=bf16`)."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


def effective_precision(device: torch.device, precision: Precision) -> Precision:
    """What `precision` means on `device`: auto is bf16 on a GPU that has it, else fp32."""
    if precision is not Precision.auto:
        return precision
    bf16_gpu = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return Precision.bf16 if bf16_gpu else Precision.fp32


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """The autocast context for `precision` on `device` (a no-op in fp32)."""
    precision = effective_precision(device, precision)
    if precision is Precision.fp32:
        return contextlib.nullcontext()
    if device.type == "cpu" and not cpu_has_native_bf16():
        _warn_emulated_bf16()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX-512 bf16 or AMX): without it,
    PyTorch emulates bf16 and runs slower than fp32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


@functools.cache
def _warn_emulated_bf16() -> None:
    logger.warning(
        "precision=bf16 on a CPU without native bf16 (no AVX-512 bf16, no AMX): PyTorch "
        "emulates it, which is slower than fp32; set precision=fp32 unless you need bf16's "
        "numerics"
    )
