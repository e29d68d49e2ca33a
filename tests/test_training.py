"""The learner on the tiny fixture: it learns, samples deterministically, checkpoints, and
fails loudly."""

from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass

import pytest
import torch

from tests.conftest import TINY_BEIR
from xpretrieval import load
from xpretrieval.data.collection import Collection
from xpretrieval.losses import (
    BatchScores,
    Flops,
    Hinge,
    InfoNCE,
    Logistic,
    Loss,
    Matryoshka,
    PairCrossEntropy,
    Triplet,
)
from xpretrieval.models import Dense, DenseEncoder, Splade
from xpretrieval.samplers import PairwiseSampler
from xpretrieval.training import AdamW, BatchwiseTrainer, Hook, Learner
from xpretrieval.training.batchers import FixedBatcher
from xpretrieval.training.checkpoint import Checkpointer
from xpretrieval.training.learner import TRAINING_STATE_FILE
from xpretrieval.training.loggers import CSVLogger


@pytest.fixture
def train_split():
    return Collection.from_beir(TINY_BEIR, "train")


def make_learner(model_dir, collection, **trainer_args) -> Learner:
    return Learner(
        model=Dense(name_or_path=str(model_dir), normalize=True).build(),
        collection=collection,
        sampler=PairwiseSampler(),
        batcher=FixedBatcher(batch_size=4),
        trainer=BatchwiseTrainer(**trainer_args),
        losses={"rank": InfoNCE(scale=20.0)},
        optimizer=AdamW(lr=2e-3, warmup_ratio=0.0),
        seed=7,
    )


def ranking_loss(model: DenseEncoder, collection) -> float:
    """InfoNCE of every training query against all training positives (the known answer)."""
    query_ids = sorted(collection.qrels)
    positives = [sorted(collection.qrels[q])[0] for q in query_ids]
    with torch.no_grad():
        queries = model.forward_queries([collection.queries[q] for q in query_ids])
        documents = model.forward_documents([collection.documents[d] for d in positives])
    rows = torch.arange(len(query_ids))
    return InfoNCE(scale=20.0)(BatchScores(model.score(queries, documents), rows, rows)).item()


def test_training_lowers_the_loss_on_a_known_task(tiny_model_dir, train_split):
    learner = make_learner(tiny_model_dir, train_split, max_steps=40)
    learner.model.eval()
    before = ranking_loss(learner.model, train_split)
    state = learner.fit()
    after = ranking_loss(learner.model, train_split)
    assert state.step == 40
    assert after < 0.5 * before, (before, after)


def test_sampler_is_deterministic_and_draws_unjudged_negatives(train_split):
    sampler = PairwiseSampler()
    first = list(itertools.islice(sampler.records(train_split, seed=3), 30))
    again = list(itertools.islice(sampler.records(train_split, seed=3), 30))
    other = list(itertools.islice(sampler.records(train_split, seed=4), 30))
    assert first == again and first != other
    for record in first:
        assert record.positive.id in train_split.qrels[record.query.id]
        assert record.negative.id not in train_split.qrels[record.query.id]
    epoch = first[: sampler.epoch_size(train_split)]  # one epoch visits every positive pair once
    assert sorted((r.query.id, r.positive.id) for r in epoch) == sorted(
        (q, d) for q, judged in train_split.qrels.items() for d in judged
    )


def test_epochs_set_the_number_of_steps():
    assert BatchwiseTrainer(epochs=2).total_steps(epoch_size=10, batch_size=4) == 5
    assert BatchwiseTrainer(epochs=2, max_steps=3).total_steps(epoch_size=10, batch_size=4) == 3


class Recorder(Hook):
    def __init__(self):
        self.moments = []

    def on_train_start(self, state):
        self.moments.append(("start", state.step))

    def on_step_end(self, state):
        self.moments.append(("step", state.step))

    def on_train_end(self, state):
        self.moments.append(("end", state.step))


def test_hooks_checkpoints_and_log(tiny_model_dir, train_split, tmp_path):
    learner = make_learner(tiny_model_dir, train_split, max_steps=5)
    recorder = Recorder()
    checkpoints = Checkpointer(tmp_path / "ckpt", every=2, keep=2, save=learner.save_checkpoint)
    learner.fit([recorder, CSVLogger(tmp_path, every=2), checkpoints])
    assert recorder.moments == [("start", 0)] + [("step", i) for i in range(1, 6)] + [("end", 5)]
    # step 2 was pruned (keep=2); step 5 is the final checkpoint
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step-0000004", "step-0000005"]
    final = tmp_path / "ckpt" / "step-0000005"
    assert torch.load(final / TRAINING_STATE_FILE)["step"] == 5
    reloaded = load(final).eval()
    learner.model.eval()
    with torch.no_grad():
        assert torch.allclose(
            reloaded.forward_queries(["bees"]), learner.model.forward_queries(["bees"])
        )
    rows = list(csv.DictReader((tmp_path / "train_log.csv").open()))
    assert [int(r["step"]) for r in rows] == [2, 4, 5]
    assert {"loss/rank", "loss/total", "learning_rate", "samples_per_second"} <= set(rows[0])


@dataclass
class Overflowing(Loss):
    """A term that is not finite, as an overflowing score makes it (settings cannot: a
    non-finite setting is refused when built)."""

    def __call__(self, batch: BatchScores) -> torch.Tensor:
        return batch.scores.sum() * float("inf")


def test_non_finite_loss_stops_naming_step_and_term(tiny_model_dir, train_split):
    learner = make_learner(tiny_model_dir, train_split, max_steps=3)
    learner.losses = {"rank": Overflowing()}
    with pytest.raises(FloatingPointError, match=r"step 1: the loss is not finite \(at step 3"):
        learner.fit()


@dataclass
class StepProbe(Loss):
    """A term worth 1 whose scheduled weight is the step number."""

    def weight_at(self, step: int) -> float:
        return float(step)

    def __call__(self, batch: BatchScores) -> torch.Tensor:
        return batch.scores.sum() * 0 + 1.0


def test_learner_applies_each_terms_scheduled_weight(tiny_model_dir, train_split):
    learner = make_learner(tiny_model_dir, train_split, max_steps=3)
    learner.losses["probe"] = StepProbe()
    recorder = Recorder()
    logged = []
    recorder.on_step_end = lambda state: logged.append(state.losses["probe"])
    learner.fit([recorder])
    assert logged == [1.0, 2.0, 3.0]


def test_splade_trains_with_a_flops_term(tiny_model_dir, train_split, tmp_path):
    learner = Learner(
        model=Splade(name_or_path=str(tiny_model_dir), new_head_bias=0.0).build(),
        collection=train_split,
        sampler=PairwiseSampler(),
        batcher=FixedBatcher(batch_size=4),
        trainer=BatchwiseTrainer(max_steps=4),
        losses={"rank": InfoNCE(scale=1.0), "flops": Flops(warmup_steps=2)},
        optimizer=AdamW(lr=1e-3),
        seed=0,
    )
    learner.fit([CSVLogger(tmp_path, every=1)])
    rows = list(csv.DictReader((tmp_path / "train_log.csv").open()))
    flops_terms = [float(row["loss/flops"]) for row in rows]
    assert len(flops_terms) == 4 and all(value > 0 for value in flops_terms)
    totals = [float(row["loss/total"]) for row in rows]
    ranks = [float(row["loss/rank"]) for row in rows]
    assert totals == pytest.approx(
        [r + f for r, f in zip(ranks, flops_terms, strict=True)], rel=1e-5
    )


def test_target_sparsity_hook_moves_the_regulariser_during_training(tiny_model_dir, train_split):
    flops = Flops(target_doc_active_dims=1.0, adapt_rate=0.1)  # far sparser than the tiny model
    learner = make_learner(tiny_model_dir, train_split, max_steps=3)
    learner.model = Splade(name_or_path=str(tiny_model_dir), new_head_bias=0.0).build()
    learner.optimizer, learner.schedule = AdamW(lr=1e-3).build(learner.model, 3)
    learner.losses = {"rank": InfoNCE(scale=1.0), "flops": flops}
    recorder = Recorder()
    scales = []
    recorder.on_step_end = lambda state: scales.append(state.statistics["flops/scale"])
    learner.fit([*flops.hooks("flops"), recorder])
    assert scales[0] == 1.0 and scales[1] > 1.0 and flops.scale > scales[1]


@pytest.mark.parametrize(
    "loss", [Hinge(margin=0.5), Logistic(), PairCrossEntropy(), Triplet(), Matryoshka(dims=[8])]
)
def test_pairwise_losses_train_through_the_batchwise_trainer(tiny_model_dir, train_split, loss):
    learner = make_learner(tiny_model_dir, train_split, max_steps=2)
    learner.losses = {"rank": loss}
    state = learner.fit()
    assert state.step == 2 and math.isfinite(state.losses["rank"])


def test_losses_stay_on_the_device_except_on_logging_steps(tiny_model_dir, train_split):
    learner = make_learner(tiny_model_dir, train_split, max_steps=5, log_every=2)
    recorder = Recorder()
    states = []
    recorder.on_step_end = states.append
    learner.fit([recorder])
    assert [state.logged for state in states] == [False, True, False, True, True]  # and last
    assert all(isinstance(value, torch.Tensor) for s in states for value in s.losses.values())


def test_a_non_finite_loss_never_reaches_a_checkpoint(tiny_model_dir, train_split, tmp_path):
    learner = make_learner(tiny_model_dir, train_split, max_steps=3, log_every=10)
    learner.losses = {"rank": Overflowing()}
    checkpoints = Checkpointer(tmp_path, every=2, keep=2, save=learner.save_checkpoint)
    with pytest.raises(FloatingPointError, match="not saving the checkpoint of step 2: the loss"):
        learner.fit([checkpoints])
    assert not list(tmp_path.glob("step-*"))


def test_hooks_of_one_class_keep_their_states_apart(tiny_model_dir, train_split, tmp_path):
    learner = make_learner(tiny_model_dir, train_split, max_steps=2)
    with pytest.raises(ValueError, match="hooks share the key 'Recorder'"):
        learner.fit([Recorder(), Recorder()])
    first, second = Flops(target_doc_active_dims=1.0), Flops(target_doc_active_dims=2.0)
    hooks = [*first.hooks("flops_q"), *second.hooks("flops_d")]
    assert [hook.key for hook in hooks] == ["TargetSparsity:flops_q", "TargetSparsity:flops_d"]
