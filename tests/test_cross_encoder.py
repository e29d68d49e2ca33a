"""Cross-encoder: pair scores, training on own pairs, the config checks, and re-ranking."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY_BEIR
from tests.test_cli import train_reranking
from xpretrieval import configure, load
from xpretrieval.core.errors import ConfigError
from xpretrieval.data.collection import Collection
from xpretrieval.losses import Hinge, InfoNCE
from xpretrieval.models import CrossEncoder, CrossEncoderModel
from xpretrieval.samplers import BatchwiseSampler
from xpretrieval.training import AdamW, BatchwiseTrainer, Learner
from xpretrieval.training.batchers import FixedBatcher

QUERIES = ["what do bees make", "where does lava come from"]
DOCUMENTS = ["Honey bees make honey.", "Lava comes from volcanoes.", "Bread rises."]


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> CrossEncoderModel:
    torch.manual_seed(0)
    return CrossEncoder(name_or_path=str(tiny_model_dir)).build()


def test_pair_scores_do_not_depend_on_the_other_pairs(model):
    with torch.no_grad():
        every = model.score_texts(QUERIES, DOCUMENTS)
        one = model.score_texts(QUERIES, DOCUMENTS, torch.tensor([[0, 0, 0], [0, 1, 0]]).bool())
    assert every.shape == (2, 3) and torch.isfinite(every).all()
    assert torch.isclose(one[1, 1], every[1, 1], atol=1e-5)
    assert torch.isinf(one).sum() == 5


@pytest.mark.parametrize("loss", [InfoNCE(scale=1.0, in_batch_negatives=False), Hinge()])
def test_cross_encoder_trains_on_its_own_pairs(tiny_model_dir, loss):
    torch.manual_seed(0)
    learner = Learner(
        model=CrossEncoder(name_or_path=str(tiny_model_dir)).build(),
        collection=Collection.from_beir(TINY_BEIR, "train"),
        sampler=BatchwiseSampler(negatives=2),
        batcher=FixedBatcher(batch_size=3),
        trainer=BatchwiseTrainer(max_steps=2),
        losses={"rank": loss},
        optimizer=AdamW(lr=1e-3, warmup_ratio=0.0),
        seed=0,
    )
    before = learner.model.query_encoder.classifier.weight.detach().clone()
    state = learner.fit()
    assert state.step == 2
    assert torch.isfinite(state.losses["rank"])
    assert not torch.equal(before, learner.model.query_encoder.classifier.weight)


def test_a_cross_encoder_needs_a_first_stage_and_whole_batches():
    with pytest.raises(ConfigError, match="evaluation.rerank: a CrossEncoder model only re-ranks"):
        configure(["model=cross_encoder"])
    with pytest.raises(ConfigError, match="batcher: a CrossEncoder model has no representations"):
        configure(["+experiment=cross_encoder_rerank", "batcher=micro"])


def test_cross_encoder_experiment_end_to_end(tiny_model_dir, tmp_path):
    train_reranking(
        "cross_encoder_rerank", tiny_model_dir, tmp_path, "sampler.hard_negatives.top_k=5"
    )
    saved = load(tmp_path / "checkpoints" / "step-0000006")
    with torch.no_grad():
        assert torch.isfinite(saved.score_texts(QUERIES, DOCUMENTS)).all()
