"""Validation while training: held-out queries, the best weights, early stopping that a
worse metric never resets, and the CSV of validation results."""

from __future__ import annotations

import csv

import pytest
import torch

from tests.conftest import TINY_BEIR, compose_config
from tests.test_training import make_learner
from xpretrieval.commands.experiment import load_experiment
from xpretrieval.core.errors import ConfigError, DataError
from xpretrieval.core.hooks import TrainState
from xpretrieval.data.collection import Collection
from xpretrieval.models.encoding import Batching
from xpretrieval.retrieval.index import ExactIndex
from xpretrieval.training.loggers import CSVLogger
from xpretrieval.training.validation import BestModel, ValidationConfig, Validator


@pytest.fixture
def train_split():
    return Collection.from_beir(TINY_BEIR, "train")


def test_held_out_queries_leave_training_and_are_drawn_by_seed(train_split):
    kept, held = train_split.hold_out(3, seed=5)
    assert len(held.queries) == 3 and set(held.qrels) == set(held.queries)
    assert not set(held.queries) & set(kept.queries) and not set(held.queries) & set(kept.qrels)
    assert len(kept.queries) + 3 == len(train_split.queries)
    assert held.documents is train_split.documents
    assert train_split.hold_out(3, seed=5)[1].queries == held.queries
    with pytest.raises(DataError, match="cannot hold out 10 of its"):
        train_split.hold_out(10, seed=5)


def state(step: int) -> TrainState:
    return TrainState(step=step, max_steps=100, epoch=0.0)


def run_validations(values: list[float], patience: int) -> tuple[BestModel, list[bool]]:
    model = torch.nn.Linear(1, 1)
    best = BestModel(model, "nDCG@10", patience)
    stops = []
    for step, value in enumerate(values, start=1):
        with torch.no_grad():
            model.weight.fill_(step)  # the weights of step n are n
        best.on_validation(state(step), {"nDCG@10": value})
        stops.append(best.should_stop())
    return best, stops


def test_a_worse_or_equal_metric_never_resets_patience():
    # naver/splade counted every result as progress; here only a strictly better one counts
    _, stops = run_validations([0.5, 0.6, 0.55, 0.6], patience=2)
    assert stops == [False, False, False, True]
    _, stops = run_validations([0.5, 0.4, 0.3, 0.45], patience=3)
    assert stops == [False, False, False, True]


def test_an_improvement_resets_patience_and_is_kept():
    best, stops = run_validations([0.5, 0.4, 0.7, 0.6], patience=2)
    assert stops == [False, False, False, False]
    assert (best.best, best.best_step, best.stale) == (0.7, 3, 1)
    best.restore()
    assert best.model.weight.item() == 3.0  # the weights of step 3, not the last ones


def test_learner_validates_when_due_and_stops_when_asked(tiny_model_dir, train_split, tmp_path):
    kept, held = train_split.hold_out(3, seed=0)
    learner = make_learner(tiny_model_dir, kept, max_steps=30)
    config = ValidationConfig(every=2, held_out_queries=3, patience=1, top_k=10)
    best = BestModel(learner.model, config.metric, patience=1)
    hooks = [CSVLogger(tmp_path, every=1), best]
    cpu = torch.device("cpu")
    validator = Validator(
        learner.model, config, held, ExactIndex(), Batching(8), cpu, learner.precision, hooks
    )
    final = learner.fit([validator, *hooks])
    rows = list(csv.DictReader((tmp_path / "validation.csv").open()))
    steps = [int(row["step"]) for row in rows]
    assert steps == list(range(2, final.step + 1, 2)) and final.step == steps[-1]
    values = [float(row["nDCG@10"]) for row in rows]
    assert max(values) == best.best
    if final.step < 30:  # stopped early: the last validation did not beat the best
        assert values[-1] <= best.best and best.stale == 1
    assert learner.model.training is False


def test_validation_needs_queries_to_validate_on():
    with pytest.raises(ConfigError, match="validation.every=5 needs queries to validate on"):
        load_experiment(compose_config("validation.every=5"))
    with pytest.raises(ConfigError, match="validation.metric: 'nDCG@ten' is not"):
        load_experiment(compose_config("validation.metric=nDCG@ten"))
