"""Dense training and encoding throughput of xpretrieval against sentence-transformers, same run.

Same model (all-MiniLM-L6-v2), same SciFact training triplets, same batch size, same maximum
lengths, fp32, on this machine. Two peers for training: `SentenceTransformerTrainer` with
`MultipleNegativesRankingLoss` (what a user runs; the time between step ends, so its data
collation counts as ours does), and the same model and loss stepped in a plain loop with AdamW
(the floor: model compute only). Prints samples/s of each and the ratios ours / theirs, and
writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.losses import MultipleNegativesRankingLoss

from xpretrieval.batchers import FixedBatcher
from xpretrieval.data import Split
from xpretrieval.losses import InfoNCE
from xpretrieval.models import Dense
from xpretrieval.models.encoding import encode_texts
from xpretrieval.samplers import PairwiseSampler
from xpretrieval.training import AdamW, BatchwiseTrainer, Learner
from xpretrieval.training.hooks import StepTimer

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
RESULTS = Path(__file__).parent / "results"


def ours_training(collection, batch_size: int, steps: int, model: str = MODEL) -> float:
    learner = Learner(
        model=Dense(name_or_path=model, normalize=True, query_max_length=256).build(),
        collection=collection,
        sampler=PairwiseSampler(),
        batcher=FixedBatcher(batch_size),
        trainer=BatchwiseTrainer(max_steps=steps + 1),
        losses={"rank": InfoNCE(scale=20.0)},
        optimizer=AdamW(lr=2e-5),
        seed=0,
    )
    timer = StepTimer()  # the first (warm-up) step is left out
    learner.fit([timer])
    return batch_size * steps / sum(timer.seconds[1:])


def theirs_training(collection, batch_size: int, steps: int, name: str = MODEL) -> float:
    model = SentenceTransformer(name, device="cpu")
    model.max_seq_length = 256
    loss = MultipleNegativesRankingLoss(model, scale=20.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    records = PairwiseSampler().records(collection, seed=0)
    batches = FixedBatcher(batch_size).batches(records)
    model.train()
    elapsed = 0.0
    for step in range(steps + 1):
        batch = next(batches)
        start = time.perf_counter()
        features = [
            {k: v for k, v in model.tokenize(texts).items()}
            for texts in (
                [r.query.text for r in batch],
                [r.positive.text for r in batch],
                [r.negative.text for r in batch],
            )
        ]
        value = loss(features, None)
        optimizer.zero_grad()
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step:  # the first step is warm-up
            elapsed += time.perf_counter() - start
    return batch_size * steps / elapsed


def trainer_training(collection, batch_size: int, steps: int, name: str = MODEL) -> float:
    """samples/s of `SentenceTransformerTrainer` on the same triplets, first step left out."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from transformers import TrainerCallback

    class StepEnds(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003
            self.times.append(time.perf_counter())

    model = SentenceTransformer(name, device="cpu")
    model.max_seq_length = 256
    records = list(itertools.islice(PairwiseSampler().records(collection, 0), batch_size * 99))
    data = Dataset.from_dict(
        {
            "anchor": [r.query.text for r in records],
            "positive": [r.positive.text for r in records],
            "negative": [r.negative.text for r in records],
        }
    )
    ends = StepEnds()
    with tempfile.TemporaryDirectory() as folder:
        arguments = SentenceTransformerTrainingArguments(
            output_dir=folder,
            per_device_train_batch_size=batch_size,
            max_steps=steps + 1,
            learning_rate=2e-5,
            warmup_ratio=0.1,
            max_grad_norm=1.0,
            save_strategy="no",
            logging_steps=10_000,
            report_to="none",
            use_cpu=True,
            seed=0,
            disable_tqdm=True,
        )
        loss = MultipleNegativesRankingLoss(model, scale=20.0)
        trainer = SentenceTransformerTrainer(
            model=model, args=arguments, train_dataset=data, loss=loss, callbacks=[ends]
        )
        trainer.train()
    return batch_size * steps / (ends.times[-1] - ends.times[0])


def encoding(texts: list[str], model: str = MODEL) -> tuple[float, float]:
    ours = Dense(name_or_path=model, normalize=True).build().eval()
    theirs = SentenceTransformer(model, device="cpu")
    theirs.max_seq_length = 256
    encode_texts(ours.forward_documents, texts[:64], 64, torch.device("cpu"))  # warm-up
    start = time.perf_counter()
    mine = encode_texts(ours.forward_documents, texts, 64, torch.device("cpu"))
    ours_rate = len(texts) / (time.perf_counter() - start)
    theirs.encode(texts[:64], batch_size=64)
    start = time.perf_counter()
    other = theirs.encode(texts, batch_size=64, convert_to_tensor=True)
    theirs_rate = len(texts) / (time.perf_counter() - start)
    agreement = torch.nn.functional.cosine_similarity(mine, other.float()).min().item()
    print(f"  min cosine between the two frameworks' vectors: {agreement:.6f}")
    return ours_rate, theirs_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--documents", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    collection = Split(ir_datasets="beir/scifact/train").load()
    print(
        f"{MODEL}, batch {args.batch_size}, {args.steps} timed steps, fp32, "
        f"{torch.get_num_threads()} CPU threads"
    )
    ours = ours_training(collection, args.batch_size, args.steps)
    trainer = trainer_training(collection, args.batch_size, args.steps)
    plain = theirs_training(collection, args.batch_size, args.steps)
    print(
        f"training samples/s   xpretrieval {ours:8.2f}   SentenceTransformerTrainer "
        f"{trainer:8.2f} (ratio {ours / trainer:.2f})   plain loop {plain:8.2f} "
        f"(ratio {ours / plain:.2f})"
    )
    texts = list(itertools.islice(collection.documents.values(), args.documents))
    ours_enc, theirs_enc = encoding(texts)
    print(
        f"encoding docs/s      xpretrieval {ours_enc:8.2f}   "
        f"sentence-transformers {theirs_enc:8.2f}"
        f"   ratio {ours_enc / theirs_enc:.2f}"
    )
    result = {
        "settings": vars(args),
        "dense_training_vs_trainer": {"ours": ours, "theirs": trainer, "ratio": ours / trainer},
        "dense_training_vs_plain_loop": {"ours": ours, "theirs": plain, "ratio": ours / plain},
        "dense_encoding": {"ours": ours_enc, "theirs": theirs_enc, "ratio": ours_enc / theirs_enc},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_throughput.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
