"""Splitting a batch never changes the loss: GradCache micro-batches give the loss and the
gradients of the unsplit batch, for InfoNCE and for SPLADE with FLOPS."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY_BEIR
from xpretrieval.data.collection import Collection
from xpretrieval.losses import Flops, InfoNCE
from xpretrieval.models import Dense, Splade
from xpretrieval.samplers import PairwiseSampler
from xpretrieval.training import AdamW, BatchwiseTrainer, Learner
from xpretrieval.training.batchers import AdaptiveBatcher, FixedBatcher, MicroBatcher
from xpretrieval.training.grad_cache import backward_cached, encode_cached

NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
CPU = torch.device("cpu")


def gradients_of(model_config, losses, batcher, records, memory: int | None = None):
    """The logged losses and the gradients of one step; with `memory`, encoding more than that
    many texts at once runs out of memory."""
    torch.manual_seed(0)
    model = model_config.build().train()
    if memory is not None:
        for name in ("forward_queries", "forward_documents"):
            setattr(model, name, _limited(getattr(model, name), memory))
    learner = Learner(
        model=model,
        collection=Collection.from_beir(TINY_BEIR, "train"),
        sampler=PairwiseSampler(),
        batcher=batcher,
        trainer=BatchwiseTrainer(),
        losses=losses,
        optimizer=AdamW(),
        seed=0,
    )
    losses, _ = learner.compute_gradients(records)
    return {name: float(value) for name, value in losses.items()}, {
        name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None
    }


def _limited(encode, memory: int):
    def encode_within(texts):
        if len(texts) > memory:
            raise torch.OutOfMemoryError(f"{len(texts)} texts do not fit")
        return encode(texts)

    return encode_within


@pytest.mark.parametrize(
    ("model", "losses"),
    [
        ("dense", {"rank": InfoNCE(scale=20.0)}),
        ("splade", {"rank": InfoNCE(scale=1.0), "flops": Flops(query_weight=0.3, doc_weight=0.1)}),
    ],
)
@pytest.mark.parametrize("micro", [1, 4])
def test_micro_batches_give_the_loss_and_gradients_of_the_whole_batch(
    tiny_model_dir, records, model, losses, micro
):
    common = {"name_or_path": str(tiny_model_dir), "config_overrides": NO_DROPOUT}
    config = (
        Dense(normalize=True, **common) if model == "dense" else Splade(new_head_bias=0.0, **common)
    )
    whole, whole_grads = gradients_of(config, losses, FixedBatcher(batch_size=6), records)
    split, split_grads = gradients_of(
        config, losses, MicroBatcher(batch_size=6, micro=micro), records
    )
    assert split == pytest.approx(whole, abs=1e-5)
    assert whole_grads.keys() == split_grads.keys() and whole_grads
    for name, gradient in whole_grads.items():
        assert torch.allclose(split_grads[name], gradient, atol=1e-5), name


def test_adaptive_batcher_splits_after_out_of_memory_with_the_same_loss(tiny_model_dir, records):
    config = Dense(name_or_path=str(tiny_model_dir), normalize=True, config_overrides=NO_DROPOUT)
    losses = {"rank": InfoNCE(scale=20.0)}
    whole, whole_grads = gradients_of(config, losses, FixedBatcher(batch_size=6), records)
    batcher = AdaptiveBatcher(batch_size=6)
    split, split_grads = gradients_of(config, losses, batcher, records, memory=4)
    assert batcher.micro_batch_size() == 3  # 12 texts -> 6 -> 3: the first size that fits
    assert split == pytest.approx(whole, abs=1e-5)
    for name, gradient in whole_grads.items():
        assert torch.allclose(split_grads[name], gradient, atol=1e-5), name


def test_adaptive_batcher_gives_up_below_its_minimum(tiny_model_dir):
    from xpretrieval.core.errors import ResourceError

    config = Dense(name_or_path=str(tiny_model_dir), config_overrides=NO_DROPOUT)
    learner = Learner(
        model=config.build(),
        collection=Collection.from_beir(TINY_BEIR, "train"),
        sampler=PairwiseSampler(),
        batcher=AdaptiveBatcher(batch_size=4, min_micro=2),
        trainer=BatchwiseTrainer(),
        losses={"rank": InfoNCE()},
        optimizer=AdamW(),
        seed=0,
    )
    learner.model.forward_queries = _limited(learner.model.forward_queries, 1)
    with pytest.raises(ResourceError, match="encoded 2 texts at a time; use batcher=adaptive"):
        learner.fit()


def test_replayed_micro_batches_see_the_same_dropout(tiny_model_dir):
    model = Dense(name_or_path=str(tiny_model_dir)).build().train()  # dropout on
    seen = []

    def encode(texts):
        reps = model.forward_queries(texts)
        seen.append(reps.detach().clone())
        return reps

    texts = ["honey bees", "lava flows", "glaciers carve valleys"]
    cached = encode_cached(encode, texts, micro_batch_size=2)
    cached.reps.sum().backward()
    state = torch.get_rng_state()
    backward_cached(encode, cached)
    assert torch.equal(torch.get_rng_state(), state)  # the replay leaves the global stream
    first_pass, replay = seen[:2], seen[2:]
    for original, again in zip(first_pass, replay, strict=True):
        assert torch.equal(original, again)
    assert not torch.equal(seen[0], model.forward_queries(texts[:2]).detach())  # dropout is on
