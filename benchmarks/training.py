"""Training throughput and peak memory, dense and SPLADE, of xpretrieval against
sentence-transformers, measured in one run on the same model (all-MiniLM-L6-v2; an MLM head
for SPLADE), SciFact training triplets, batch, lengths, dropout and precision.

Dense peers: `SentenceTransformerTrainer` + `MultipleNegativesRankingLoss` (what a user runs;
the median interval between its step ends, so its collation counts as ours does) and the same
model and loss stepped in a plain loop (the floor: model compute only). SPLADE peer:
`SparseEncoder` + `SpladeLoss(SparseMultipleNegativesRankingLoss)` with the FLOPS weights of
`+experiment=splade`; xpretrieval also runs with the plain [batch, length, vocabulary] SPLADE
pooling and with PyTorch's SDPA attention (fp32, which also leaves batches padded: packing
needs models/attention.py) to show what the chunked pooling and that attention buy. Each run
is its own process, so that its peak resident memory is its own; each reports the median of
`--steps` timed steps after one warm-up step, and the fraction of the machine's matmul rate
its FLOPs reach.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace

import torch
from transformers import AutoConfig, AutoTokenizer

from benchmarks.common import (
    DEVICE,
    MODEL,
    matmul_gflops,
    peak_rss_gb,
    precisions,
    row,
    synchronize,
    transformer_flops,
    write_result,
)
from xpretrieval.core.device import Precision, autocast
from xpretrieval.data import Split
from xpretrieval.data.collection import Collection
from xpretrieval.losses import Flops, InfoNCE
from xpretrieval.models import Dense, Splade
from xpretrieval.samplers import PairwiseSampler
from xpretrieval.training import AdamW, BatchwiseTrainer, Learner
from xpretrieval.training.batchers import FixedBatcher
from xpretrieval.training.progress_bar import StepTimer

QUERY_WEIGHT, DOC_WEIGHT = 5e-4, 3e-4  # FLOPS weights of +experiment=splade
SCALE = {"dense": 20.0, "splade": 1.0}  # InfoNCE scale: cosine for dense, raw dot for SPLADE
# (model kind, framework) -> the peer it is compared with
RUNS = {
    ("dense", "xpretrieval"): None,
    ("dense", "st-trainer"): "sentence-transformers Trainer",
    ("dense", "st-loop"): "sentence-transformers plain loop",
    ("dense", "xpretrieval-sdpa-attention"): "xpretrieval, SDPA attention, padded",
    ("splade", "xpretrieval"): None,
    ("splade", "xpretrieval-plain-pooling"): "xpretrieval, plain pooling",
    ("splade", "st-sparse"): "sentence-transformers SparseEncoder",
}
# xpretrieval without one of its optimisations, in fp32, with --ablations (7 more minutes on
# an AVX2 2-core CPU): what each optimisation is worth
ABLATIONS = {("dense", "xpretrieval-sdpa-attention"), ("splade", "xpretrieval-plain-pooling")}


@dataclass(frozen=True)
class Setting:
    """What every framework is measured on: data, model, batch, lengths, precision, and the
    number of steps run (the first is warm-up)."""

    collection: Collection
    model: str
    batch: int
    length: int
    steps: int
    precision: Precision = Precision.fp32


def triplets(setting: Setting) -> list[list]:
    """The batches of (query, positive, negative) records that every run sees, in order."""
    records = PairwiseSampler().records(setting.collection, seed=0)
    return list(itertools.islice(FixedBatcher(setting.batch).batches(records), setting.steps))


def columns(records: list) -> list[list[str]]:
    return [
        [r.query.text for r in records],
        [r.positive.text for r in records],
        [r.negative.text for r in records],
    ]


def ours(
    kind: str, setting: Setting, plain_pooling: bool = False, sdpa_attention: bool = False
) -> list[float]:
    """Seconds of each step of xpretrieval's Learner (InfoNCE, + FLOPS for SPLADE); the
    ablations: the plain SPLADE pooling, PyTorch's SDPA instead of models/attention.py."""
    losses: dict = {"rank": InfoNCE(scale=SCALE[kind])}
    lengths = {"query_max_length": setting.length, "doc_max_length": setting.length}
    if kind == "dense":
        encoder = Dense(name_or_path=setting.model, normalize=True, **lengths).build().to(DEVICE)
        if sdpa_attention:
            encoder.query_encoder.set_attn_implementation("sdpa")  # shared by the documents
    else:
        encoder = Splade(name_or_path=setting.model, **lengths).build().to(DEVICE)
        if plain_pooling:
            encoder.pooling_chunk = None  # this model's own setting: the plain computation
        losses["flops"] = Flops(query_weight=QUERY_WEIGHT, doc_weight=DOC_WEIGHT, warmup_steps=0)
    learner = Learner(
        model=encoder,
        collection=setting.collection,
        sampler=PairwiseSampler(),
        batcher=FixedBatcher(setting.batch),
        trainer=BatchwiseTrainer(max_steps=setting.steps),
        losses=losses,
        optimizer=AdamW(lr=2e-5),
        seed=0,
        precision=setting.precision,
    )
    timer = StepTimer()
    learner.fit([timer])
    return timer.seconds


def st_model(kind: str, model: str, length: int):  # noqa: ANN201
    """The peer's model and loss, configured as ours."""
    if kind == "dense":
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss,
        )

        encoder = SentenceTransformer(model, device=str(DEVICE))
        encoder.max_seq_length = length
        return encoder, MultipleNegativesRankingLoss(encoder, scale=SCALE[kind])
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.losses import (
        SparseMultipleNegativesRankingLoss,
        SpladeLoss,
    )
    from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer

    transformer = Transformer(model, transformer_task="fill-mask", max_seq_length=length)
    encoder = SparseEncoder(modules=[transformer, SpladePooling("max")], device=str(DEVICE))
    loss = SpladeLoss(
        encoder,
        SparseMultipleNegativesRankingLoss(encoder, scale=SCALE[kind]),
        document_regularizer_weight=DOC_WEIGHT,
        query_regularizer_weight=QUERY_WEIGHT,
    )
    return encoder, loss


def st_loop(kind: str, setting: Setting) -> list[float]:
    """Seconds of each step of the peer's model and loss stepped by hand with AdamW."""
    encoder, loss = st_model(kind, setting.model, setting.length)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=2e-5)
    encoder.train()
    timings = []
    for records in triplets(setting):
        start = time.perf_counter()
        with autocast(DEVICE, setting.precision):
            features = [dict(encoder.tokenize(texts)) for texts in columns(records)]
            value = loss(features, None)
            total = sum(value.values()) if isinstance(value, dict) else value
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
        optimizer.step()
        synchronize()
        timings.append(time.perf_counter() - start)
    return timings


def st_trainer(setting: Setting) -> list[float]:
    """Seconds between the step ends of `SentenceTransformerTrainer` on the same triplets."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )
    from transformers import TrainerCallback

    class StepEnds(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003
            if not self.times:
                self.times.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003
            synchronize()
            self.times.append(time.perf_counter())

    encoder, loss = st_model("dense", setting.model, setting.length)
    records = [r for records in triplets(setting) for r in records]
    anchor, positive, negative = columns(records)
    data = Dataset.from_dict({"anchor": anchor, "positive": positive, "negative": negative})
    ends = StepEnds()
    with tempfile.TemporaryDirectory() as folder:
        arguments = SentenceTransformerTrainingArguments(
            output_dir=folder,
            per_device_train_batch_size=setting.batch,
            max_steps=setting.steps,
            learning_rate=2e-5,
            max_grad_norm=1.0,
            save_strategy="no",
            logging_steps=10_000,
            report_to="none",
            use_cpu=DEVICE.type == "cpu",
            bf16=setting.precision is Precision.bf16,
            seed=0,
            disable_tqdm=True,
        )
        trainer = SentenceTransformerTrainer(
            model=encoder, args=arguments, train_dataset=data, loss=loss, callbacks=[ends]
        )
        trainer.train()
    return [b - a for a, b in itertools.pairwise(ends.times)]


def measure(kind: str, framework: str, setting: Setting) -> dict:
    """One run's median step (the first step, warm-up, left out), samples/s and peak memory."""
    if framework == "st-trainer":
        timings = st_trainer(setting)
    elif framework in ("st-loop", "st-sparse"):
        timings = st_loop(kind, setting)
    else:
        ablations = {"plain_pooling": "plain-pooling", "sdpa_attention": "sdpa-attention"}
        chosen = {name: framework.endswith(suffix) for name, suffix in ablations.items()}
        timings = ours(kind, setting, **chosen)
    median = statistics.median(timings[1:])
    return {
        "seconds_per_step": median,
        "samples_per_second": setting.batch / median,
        "peak_rss_gb": peak_rss_gb(),
        **(
            {"peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30}
            if DEVICE.type == "cuda"
            else {}
        ),
    }


def step_flops(kind: str, setting: Setting) -> float:
    """Mean training FLOPs of a timed step (forward and backward: 3x the forward pass), from
    the token counts of the texts each step encodes."""
    tokenizer = AutoTokenizer.from_pretrained(setting.model)
    config = AutoConfig.from_pretrained(setting.model)
    timed = triplets(setting)[1:]
    total = 0.0
    for records in timed:
        for texts in columns(records):
            ids = tokenizer(texts, truncation=True, max_length=setting.length)["input_ids"]
            lengths = [len(row) for row in ids]
            total += 3 * transformer_flops(config, lengths, vocab_head=kind == "splade")
    return total / len(timed)


def child(args: argparse.Namespace, kind: str, framework: str, precision: Precision) -> dict:
    """Run one measurement in a fresh process; its figures."""
    command = [sys.executable, "-m", "benchmarks.training", "--one", kind, framework]
    command += ["--precision", precision.value, "--model", args.model]
    command += ["--batch-size", str(args.batch_size), "--length", str(args.length)]
    command += ["--steps", str(args.steps)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--precision", default=None, help="one precision only (default: all)")
    parser.add_argument(
        "--ablations",
        action="store_true",
        help="also xpretrieval without its attention or its SPLADE pooling (fp32)",
    )
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    collection = Split(ir_datasets="beir/scifact/train").load()
    # the timed steps and one warm-up step before them
    setting = Setting(collection, args.model, args.batch_size, args.length, args.steps + 1)
    if args.one:
        precision = Precision(args.precision)
        print(json.dumps(measure(*args.one, replace(setting, precision=precision))))
        return
    chosen = [Precision(args.precision)] if args.precision else precisions()
    figures: dict = {}
    rows = []
    for precision in chosen:
        ablations = args.ablations and precision is Precision.fp32
        gflops = matmul_gflops(precision)
        for kind in ("dense", "splade"):
            flops = step_flops(kind, setting)
            runs = {}
            for run_kind, framework in RUNS:
                if run_kind != kind or ((run_kind, framework) in ABLATIONS and not ablations):
                    continue
                runs[framework] = child(args, kind, framework, precision)
                runs[framework]["limit_fraction"] = (
                    flops / runs[framework]["seconds_per_step"] / 1e9 / gflops
                )
                print(f"  {kind} {framework} {precision.value}: {runs[framework]}", file=sys.stderr)
            figures[f"{kind}_{precision.value}"] = runs
            mine = runs["xpretrieval"]
            for framework, figure in runs.items():
                if framework == "xpretrieval":
                    continue
                label = f"{kind} training, {precision.value}"
                rows.append(
                    row(
                        label,
                        "samples/s",
                        mine["samples_per_second"],
                        figure["samples_per_second"],
                        RUNS[kind, framework],
                        limit_fraction=mine["limit_fraction"],
                        peer_limit_fraction=figure["limit_fraction"],
                    )
                )
                rows.append(
                    row(
                        label,
                        "peak RSS GB",
                        mine["peak_rss_gb"],
                        figure["peak_rss_gb"],
                        RUNS[kind, framework],
                    )
                )
    result = {
        "settings": {k: v for k, v in vars(args).items() if k != "one"},
        "figures": figures,
        "rows": rows,
    }
    result.update(named_ratios(figures))
    write_result("training", result)


def named_ratios(figures: dict) -> dict:
    """The headline ratios under plain names (ours ÷ peer), for scripts: e.g.
    `splade_training.ratio`, `splade_training.memory_ratio`, `dense_training_vs_trainer.ratio`."""
    named = {}
    pairs = {
        "dense_training_vs_trainer": ("dense", "st-trainer"),
        "dense_training_vs_plain_loop": ("dense", "st-loop"),
        "splade_training": ("splade", "st-sparse"),
        "splade_training_vs_plain_pooling": ("splade", "xpretrieval-plain-pooling"),
        "dense_training_vs_sdpa_attention": ("dense", "xpretrieval-sdpa-attention"),
    }
    for key, figure in figures.items():
        kind, precision = key.split("_")
        for name, (pair_kind, framework) in pairs.items():
            if pair_kind == kind and framework in figure:
                mine, peer = figure["xpretrieval"], figure[framework]
                suffix = "" if precision == "fp32" else f"_{precision}"
                named[name + suffix] = {
                    "ratio": mine["samples_per_second"] / peer["samples_per_second"],
                    "memory_ratio": mine["peak_rss_gb"] / peer["peak_rss_gb"],
                }
    return named


if __name__ == "__main__":
    main()
