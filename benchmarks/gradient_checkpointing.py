"""Peak memory and time of one training step (forward, loss terms, backward) with and without
`model.gradient_checkpointing`, dense and SPLADE, on all-MiniLM-L6-v2 (a new MLM head for
SPLADE), 32 SciFact (query, positive, negative) records: 32 queries and 64 documents a step,
texts cut at 256 tokens, InfoNCE (+ FLOPS for SPLADE), dropout on, as `+experiment=splade`.

Memory is the most tensor memory the step holds at once beyond what was allocated before it
(activations, gradients, temporaries; the weights are reported apart): on a GPU CUDA's
`max_memory_allocated`; on a CPU the running sum of torch.profiler's allocation and free
events (`profile_memory=True`), the only count of live tensors there. Each configuration runs
in its own process, whose peak resident memory is reported too, but that figure adds the
Python runtime, the libraries and the pages the allocator keeps, which blur the difference.
Time is the median of `--steps` steps after a warm-up step, the plain and the checkpointed
model stepping in turn in one process (a shared machine's load then slows both alike).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import MODEL, peak_rss_gb, write_result
from benchmarks.training import DOC_WEIGHT, QUERY_WEIGHT, SCALE, Setting, triplets
from xpretrieval.core.device import Precision, resolve_device
from xpretrieval.data import Split
from xpretrieval.losses import Flops, InfoNCE
from xpretrieval.models import Dense, Splade
from xpretrieval.samplers import PairwiseSampler
from xpretrieval.training import AdamW, BatchwiseTrainer, Learner
from xpretrieval.training.batchers import FixedBatcher

MB = 2**20


def learner(kind: str, checkpointing: bool, setting: Setting, device: torch.device) -> Learner:
    """xpretrieval's Learner on the model of `kind`, with or without checkpointing."""
    fields = {
        "name_or_path": setting.model,
        "query_max_length": setting.length,
        "doc_max_length": setting.length,
        "gradient_checkpointing": checkpointing,
    }
    losses: dict = {"rank": InfoNCE(scale=SCALE[kind])}
    if kind == "dense":
        model = Dense(normalize=True, **fields).build()
    else:
        model = Splade(**fields).build()
        losses["flops"] = Flops(query_weight=QUERY_WEIGHT, doc_weight=DOC_WEIGHT, warmup_steps=0)
    return Learner(
        model=model.to(device),
        collection=setting.collection,
        sampler=PairwiseSampler(),
        batcher=FixedBatcher(setting.batch),
        trainer=BatchwiseTrainer(),
        losses=losses,
        optimizer=AdamW(lr=2e-5),
        seed=0,
        precision=setting.precision,
    )


def peak_step_bytes(step: Callable[[], object], device: torch.device) -> int:
    """The most tensor bytes `step` holds at once beyond those allocated before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    events = [
        event
        for event in profiler.profiler.kineto_results.events()
        if event.name() == "[memory]" and event.device_type() == DeviceType.CPU
    ]
    live = peak = 0
    for event in sorted(events, key=lambda event: event.start_ns()):
        live += event.nbytes()  # negative for a free
        peak = max(peak, live)
    return peak


def step(run: Learner, batch: list) -> Callable[[], object]:
    """One training step's forward, loss terms and backward on `batch`, as `fit` runs it."""

    def gradients() -> object:
        run.optimizer.zero_grad(set_to_none=True)  # as a training step starts
        return run.compute_gradients(batch)

    return gradients


def measure(kind: str, checkpointing: bool, setting: Setting) -> dict:
    """One configuration's step peak memory (the first batch), its weights, and this
    process's peak resident memory."""
    device = resolve_device(None)
    run = learner(kind, checkpointing, setting, device)
    run.model.train()  # as `fit` sets it: dropout on, and layers checkpointed
    peak = peak_step_bytes(step(run, triplets(setting)[0]), device)
    weights = sum(p.numel() * p.element_size() for p in run.model.parameters())
    return {"step_peak_mb": peak / MB, "weights_mb": weights / MB, "peak_rss_gb": peak_rss_gb()}


def step_seconds(kind: str, setting: Setting) -> dict:
    """Median seconds of a step without and with checkpointing: both models in one process,
    stepping in turn on the same batches (the first, warm-up, left out), so that a varying
    load of the machine weighs on both alike."""
    device = resolve_device(None)
    runs = {state: learner(kind, state == "on", setting, device) for state in ("off", "on")}
    for run in runs.values():
        run.model.train()
    seconds: dict[str, list[float]] = {"off": [], "on": []}
    for number, batch in enumerate(triplets(setting)):
        order = ("off", "on") if number % 2 else ("on", "off")
        for state in order:
            start = time.perf_counter()
            step(runs[state], batch)()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if number:
                seconds[state].append(time.perf_counter() - start)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": device_name, **{s: statistics.median(t) for s, t in seconds.items()}}


def child(args: argparse.Namespace, kind: str, what: str) -> dict:
    """Run one measurement (`off`/`on`: memory; `time`: both step times) in a fresh process."""
    command = [sys.executable, "-m", "benchmarks.gradient_checkpointing", "--model", args.model]
    command += ["--one", kind, what, "--precision", args.precision]
    command += ["--batch-size", str(args.batch_size), "--length", str(args.length)]
    command += ["--steps", str(args.steps)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def summary(figures: dict) -> tuple[list[dict], dict, str]:
    """The `make bench` rows (checkpointed ÷ plain), the named ratios, and a markdown table."""
    rows, named = [], {}
    lines = [
        "| model | checkpointing | step peak MB | weights MB | peak RSS GB | s / step |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for kind, runs in figures.items():
        for state in ("off", "on"):
            f = runs[state]
            lines.append(
                f"| {kind} | {state} | {f['step_peak_mb']:.0f} | {f['weights_mb']:.0f} | "
                f"{f['peak_rss_gb']:.2f} | {runs['seconds'][state]:.2f} |"
            )
        on, off = runs["on"], runs["off"]
        seconds = runs["seconds"]
        named[f"{kind}_gradient_checkpointing"] = {
            "memory_ratio": on["step_peak_mb"] / off["step_peak_mb"],
            "time_ratio": seconds["on"] / seconds["off"],
        }
        pairs = (("step peak MB", off["step_peak_mb"], on["step_peak_mb"]),)
        pairs += (("s/step", seconds["off"], seconds["on"]),)
        for unit, plain, checkpointed in pairs:
            rows.append(
                {
                    "figure": f"{kind} training step, gradient checkpointing",
                    "unit": unit,
                    "xpretrieval": checkpointed,
                    "peer": "without checkpointing",
                    "peer_value": plain,
                    "ratio": checkpointed / plain,
                }
            )
    for kind, ratios in named.items():
        lines.append(
            f"\n{kind}: memory x{ratios['memory_ratio']:.2f}, time x{ratios['time_ratio']:.2f}"
        )
    return rows, named, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="timed steps, after a warm-up step")
    parser.add_argument("--precision", default="auto", help="auto: bf16 on a GPU that has it")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    collection = Split(ir_datasets="beir/scifact/train").load()
    setting = Setting(collection, args.model, args.batch_size, args.length, args.steps + 1)
    setting = replace(setting, precision=Precision(args.precision))
    if args.one:
        kind, what = args.one
        figures = (
            step_seconds(kind, setting) if what == "time" else measure(kind, what == "on", setting)
        )
        print(json.dumps(figures))
        return
    figures: dict = {}
    for kind in ("dense", "splade"):
        figures[kind] = {"off": child(args, kind, "off"), "on": child(args, kind, "on")}
        figures[kind]["seconds"] = child(args, kind, "time")
        print(f"  {kind}: {figures[kind]}", file=sys.stderr)
    rows, named, text = summary(figures)
    settings = {k: v for k, v in vars(args).items() if k != "one"}
    write_result(
        "gradient_checkpointing", {"settings": settings, "figures": figures, "rows": rows, **named}
    )
    print(text)


if __name__ == "__main__":
    main()
