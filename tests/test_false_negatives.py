"""Batches larger than the data, and in-batch copies of a query's positive: never counted as
its negatives (they would teach the model that a relevant document is not)."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from tests.conftest import TINY_BEIR
from xpretrieval.data.collection import Collection
from xpretrieval.data.records import PairwiseRecord, Text
from xpretrieval.losses import BatchScores, InfoNCE
from xpretrieval.models import Dense
from xpretrieval.samplers import PairwiseSampler
from xpretrieval.training.batchers import FixedBatcher
from xpretrieval.training.learner import Learner
from xpretrieval.training.optim import AdamW
from xpretrieval.training.trainers import BatchwiseTrainer, _false_negatives


def record(query: str, positive: str, negative: str) -> PairwiseRecord:
    return PairwiseRecord(Text(query, query), Text(positive, positive), Text(negative, negative))


def test_copies_of_a_positive_and_other_positives_of_a_query_are_marked():
    # columns: positives p1 p2 p1, then negatives n1 n2 p2
    batch = [record("q1", "p1", "n1"), record("q1", "p2", "n2"), record("q3", "p1", "p2")]
    expected = torch.tensor(
        [
            [False, True, True, False, False, True],  # q1: p2 is its other positive, p1 again
            [True, False, True, False, False, True],  # q1 (second record): p1 twice, p2 again
            [True, False, False, False, False, False],  # q3: p1 brought by q1's record
        ]
    )
    assert torch.equal(_false_negatives(batch, torch.device("cpu")), expected)


def test_infonce_leaves_false_negatives_out_of_the_softmax():
    scores = torch.tensor([[2.0, 1.0, 3.0], [0.5, 1.5, -1.0]])
    rows = torch.arange(2)
    owners = torch.tensor([0, 1, 0])
    mask = torch.tensor([[False, False, True], [False, False, False]])
    batch = BatchScores(scores, rows, owners, false_negatives=mask)
    # query 0 without column 2: -log(e^2 / (e^2 + e^1)); query 1 over all three columns
    query0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(1)))
    query1 = -math.log(math.exp(1.5) / (math.exp(0.5) + math.exp(1.5) + math.exp(-1)))
    loss = InfoNCE(scale=1.0)(batch).item()
    assert loss == pytest.approx((query0 + query1) / 2, abs=1e-6)
    unmasked = InfoNCE(scale=1.0, mask_false_negatives=False)(batch).item()
    plain = InfoNCE(scale=1.0)(BatchScores(scores, rows, owners)).item()
    assert unmasked == pytest.approx(plain, abs=1e-6) and unmasked > loss


def test_a_batch_larger_than_the_training_records_is_capped(tiny_model_dir, caplog):
    train = Collection.from_beir(TINY_BEIR, "train")
    records = PairwiseSampler().epoch_size(train)
    with caplog.at_level(logging.WARNING):
        learner = Learner(
            model=Dense(name_or_path=str(tiny_model_dir)).build(),
            collection=train,
            sampler=PairwiseSampler(),
            batcher=FixedBatcher(batch_size=records + 5),
            trainer=BatchwiseTrainer(max_steps=1),
            losses={"rank": InfoNCE()},
            optimizer=AdamW(),
            seed=0,
        )
    assert learner.batcher.batch_size == records
    assert f"batch_size={records + 5} is more than the {records} distinct training" in caplog.text
    learner.fit()
