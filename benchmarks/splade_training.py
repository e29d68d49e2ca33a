"""SPLADE training: samples/s and peak memory of xpretrieval against sentence-transformers'
SparseEncoder + SpladeLoss, measured in one run on the same model (all-MiniLM-L6-v2 with an
MLM head), SciFact training triplets, batch, lengths, precision (fp32) and dropout.

Each framework runs in its own process, so that its peak resident memory is its own; each
times `--steps` steps after one warm-up step and reports the median. xpretrieval runs twice:
with its chunked pooling (the default: no [batch, length, vocabulary] logits) and with the
plain computation, to show what the chunking buys. Writes benchmarks/results/splade_training.json
and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from xpretrieval.batchers import FixedBatcher
from xpretrieval.data import Split
from xpretrieval.losses import Flops, InfoNCE
from xpretrieval.models import Splade
from xpretrieval.samplers import PairwiseSampler
from xpretrieval.training import AdamW, BatchwiseTrainer, Learner
from xpretrieval.training.hooks import StepTimer

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
RESULTS = Path(__file__).parent / "results"
QUERY_WEIGHT, DOC_WEIGHT = 5e-4, 3e-4  # FLOPS weights of +experiment=splade
RUNS = {"xpretrieval": 32, "xpretrieval-plain": None, "sentence-transformers": None}


def ours_training(
    collection, model: str, batch: int, length: int, steps: int, chunk: int | None
) -> list[float]:
    """Seconds of each timed step of xpretrieval's SPLADE (chunked pooling unless `chunk` is
    None), InfoNCE + FLOPS on raw dot products."""
    encoder = Splade(name_or_path=model, query_max_length=length, doc_max_length=length).build()
    encoder.pooling_chunk = chunk  # this model's own setting (None: the plain computation)
    learner = Learner(
        model=encoder,
        collection=collection,
        sampler=PairwiseSampler(),
        batcher=FixedBatcher(batch),
        trainer=BatchwiseTrainer(max_steps=steps + 1),
        losses={
            "rank": InfoNCE(scale=1.0),
            "flops": Flops(query_weight=QUERY_WEIGHT, doc_weight=DOC_WEIGHT, warmup_steps=0),
        },
        optimizer=AdamW(lr=2e-5),
        seed=0,
    )
    timer = StepTimer()
    learner.fit([timer])
    return timer.seconds[1:]  # without the warm-up step


def theirs_training(collection, model: str, batch: int, length: int, steps: int) -> list[float]:
    """Seconds of each timed step of SparseEncoder + SpladeLoss(SparseMultipleNegativesRanking-
    Loss) stepped in a plain loop with AdamW, on the same triplets."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.losses import (
        SparseMultipleNegativesRankingLoss,
        SpladeLoss,
    )
    from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer

    transformer = Transformer(model, transformer_task="fill-mask", max_seq_length=length)
    encoder = SparseEncoder(modules=[transformer, SpladePooling("max")], device="cpu")
    loss = SpladeLoss(
        encoder,
        SparseMultipleNegativesRankingLoss(encoder, scale=1.0),
        document_regularizer_weight=DOC_WEIGHT,
        query_regularizer_weight=QUERY_WEIGHT,
    )
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=2e-5)
    batches = FixedBatcher(batch).batches(PairwiseSampler().records(collection, seed=0))
    encoder.train()
    timings = []
    for _ in range(steps + 1):
        records = next(batches)
        start = time.perf_counter()
        columns = (
            [r.query.text for r in records],
            [r.positive.text for r in records],
            [r.negative.text for r in records],
        )
        features = [dict(encoder.tokenize(texts)) for texts in columns]
        value = loss(features, None)
        total = sum(value.values()) if isinstance(value, dict) else value
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
        optimizer.step()
        timings.append(time.perf_counter() - start)
    return timings[1:]


def measure(name: str, collection, model: str, batch: int, length: int, steps: int) -> dict:
    """One framework's median step time, samples/s and peak resident memory (this process)."""
    if name == "sentence-transformers":
        timings = theirs_training(collection, model, batch, length, steps)
    else:
        timings = ours_training(collection, model, batch, length, steps, RUNS[name])
    median = statistics.median(timings)
    return {
        "seconds_per_step": median,
        "samples_per_second": batch / median,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def summary(figures: dict[str, dict]) -> dict:
    """The named ratios, ours / peer, beside the raw figures."""
    ours, plain, theirs = (figures[n] for n in RUNS)
    return {
        "splade_training": {
            "ratio": ours["samples_per_second"] / theirs["samples_per_second"],
            "memory_ratio": ours["peak_rss_gb"] / theirs["peak_rss_gb"],
            "chunked_vs_plain_ratio": ours["samples_per_second"] / plain["samples_per_second"],
            "chunked_vs_plain_memory_ratio": ours["peak_rss_gb"] / plain["peak_rss_gb"],
        },
        "figures": figures,
    }


def table(result: dict) -> str:
    lines = ["| SPLADE training | samples/s | peak RSS (GB) |", "| --- | --- | --- |"]
    for name, figure in result["figures"].items():
        lines.append(
            f"| {name} | {figure['samples_per_second']:.2f} | {figure['peak_rss_gb']:.2f} |"
        )
    ratios = result["splade_training"]
    lines.append(
        f"\nratio vs sentence-transformers: speed {ratios['ratio']:.2f}, memory "
        f"{ratios['memory_ratio']:.2f}; chunked vs plain: speed "
        f"{ratios['chunked_vs_plain_ratio']:.2f}, "
        f"memory {ratios['chunked_vs_plain_memory_ratio']:.2f}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--one", choices=list(RUNS), help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    settings = (args.model, args.batch_size, args.length, args.steps)
    if args.one:
        collection = Split(ir_datasets="beir/scifact/train").load()
        print(json.dumps(measure(args.one, collection, *settings)))
        return
    figures = {}
    for name in RUNS:
        command = [sys.executable, __file__, "--one", name, "--model", args.model]
        command += ["--batch-size", str(args.batch_size), "--length", str(args.length)]
        command += ["--steps", str(args.steps)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        figures[name] = json.loads(output.strip().splitlines()[-1])
        print(f"  {name}: {figures[name]}", file=sys.stderr)
    result = {"settings": dict(zip(("model", "batch", "length", "steps"), settings, strict=True))}
    result.update(summary(figures))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "splade_training.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
