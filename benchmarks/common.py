"""What every benchmark shares: the model, the results folder, the precisions this machine
runs natively, timing, peak memory, and the limit the hardware sets (measured matmul GFLOP/s
and a transformer's FLOPs per text), so each figure can be reported as a fraction of it."""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from xpretrieval.core.device import Precision, cpu_has_native_bf16, resolve_device

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# where training and encoding are measured, ours and the peers alike: a GPU when there is one
DEVICE = resolve_device()
RESULTS = Path(__file__).parent / "results"


def precisions() -> list[Precision]:
    """fp32, and bf16 where the hardware has it (AVX-512 bf16 / AMX, or a bf16 GPU): emulated
    bf16 is slower than fp32 and measures nothing worth knowing."""
    native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return [Precision.fp32] + ([Precision.bf16] if native or cpu_has_native_bf16() else [])


def synchronize() -> None:
    """Wait for the GPU's queued work (a no-op on CPU): a wall-clock time ends after it."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def median_seconds(step: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of `step` over `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        step()
        synchronize()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def _status_gb(field: str) -> float | None:
    """A memory field of /proc/self/status (Linux), in GB; None elsewhere."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return None
    line = next(x for x in status.read_text().splitlines() if x.startswith(f"{field}:"))
    return int(line.split()[1]) / 2**20


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, or since `reset_peak_rss` (VmHWM, which
    can be reset, unlike ru_maxrss: Linux reports that in KiB, macOS in bytes)."""
    peak = _status_gb("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (2**30 if sys.platform == "darwin" else 2**20)


def current_rss_gb() -> float:
    current = _status_gb("VmRSS")
    return peak_rss_gb() if current is None else current


def reset_peak_rss() -> None:
    """Start measuring the peak afresh (Linux: writing 5 to clear_refs resets VmHWM)."""
    clear = Path("/proc/self/clear_refs")
    if clear.exists():
        clear.write_text("5")


def matmul_gflops(precision: Precision, size: int = 2048, repeats: int = 10) -> float:
    """The device's measured dense matrix-product rate: the ceiling of transformer compute
    (on a GPU, fp32 products may use TF32 where PyTorch allows it, as training does)."""
    dtype = torch.bfloat16 if precision is Precision.bf16 else torch.float32
    matrix = torch.randn(size, size, dtype=dtype, device=DEVICE)
    return 2 * size**3 / median_seconds(lambda: matrix @ matrix, repeats, warmup=2) / 1e9


def transformer_flops(config, lengths: Sequence[int], vocab_head: bool = False) -> float:  # noqa: ANN001
    """Forward FLOPs of a BERT-like encoder (`config`: a transformers config) over texts of
    these token counts: the layers' matrix products and attention, plus a masked-LM head's
    transform and vocabulary projection when `vocab_head` (SPLADE). Element-wise work is left
    out, so the figure is a lower bound and the ideal rate it gives an upper bound."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    per_token = 2 * layers * (4 * hidden * hidden + 2 * hidden * config.intermediate_size)
    if vocab_head:
        per_token += 2 * (hidden * hidden + hidden * config.vocab_size)
    attention = sum(4 * layers * hidden * n * n for n in lengths)  # QK^T and AV
    return per_token * sum(lengths) + attention


def write_result(name: str, result: dict) -> Path:
    """benchmarks/results/<name>.json, the figures named plainly for scripts to read."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def row(figure: str, unit: str, ours: float, peer: float, peer_name: str, **extra: float) -> dict:
    """One line of the `make bench` table: a figure of xpretrieval and of its peer, ours ÷ peer;
    with the peer's fraction of the limit, the `ceiling`: the ratio that a run doing the peer's
    FLOPs at the machine's matmul rate would reach (1 ÷ that fraction), the most that an
    implementation computing the same products can gain on this machine."""
    line = {
        "figure": figure,
        "unit": unit,
        "xpretrieval": ours,
        "peer": peer_name,
        "peer_value": peer,
        "ratio": ours / peer,
        **extra,
    }
    if extra.get("peer_limit_fraction"):
        line["ceiling"] = 1 / extra["peer_limit_fraction"]
    return line
