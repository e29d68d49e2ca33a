"""SPLADE pooled by chunks of positions (no [batch, length, vocabulary] logits): the values and
the gradients of the plain computation, for max and sum pooling, in a model, and with
GradCache micro-batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.test_grad_cache import NO_DROPOUT, gradients_of
from xpretrieval.batchers import FixedBatcher, MicroBatcher
from xpretrieval.losses import Flops, InfoNCE
from xpretrieval.models import SparsePooling, Splade, SpladeEncoder
from xpretrieval.models.splade_pooling import pooled_term_weights


def plain(states, mask, weight, bias, max_pooling: bool):
    weights = torch.log1p(torch.relu(F.linear(states, weight, bias))) * mask[..., None]
    return weights.amax(dim=1) if max_pooling else weights.sum(dim=1)


def leaves(seed: int):
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(3, 7, 5, generator=generator, requires_grad=True)
    weight = torch.randn(11, 5, generator=generator, requires_grad=True)
    bias = (torch.randn(11, generator=generator) - 0.5).requires_grad_()
    mask = torch.ones(3, 7)
    mask[0, 5:] = 0  # padding
    mask[2, 1:] = 0
    return states, mask, weight, bias


@pytest.mark.parametrize("max_pooling", [True, False], ids=["max", "sum"])
@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_chunked_values_and_gradients_equal_the_plain_computation(max_pooling, chunk):
    upstream = torch.randn(3, 11, generator=torch.Generator().manual_seed(9))
    results = []
    for compute in (plain, lambda *a: pooled_term_weights(*a, chunk=chunk)):
        states, mask, weight, bias = leaves(0)
        values = compute(states, mask, weight, bias, max_pooling)
        (values * upstream).sum().backward()
        results.append((values.detach(), states.grad, weight.grad, bias.grad))
    for expected, got in zip(*results, strict=True):
        assert torch.allclose(got, expected, atol=1e-5)
    assert (results[0][0] > 0).any() and (results[0][0] == 0).any()  # both cases exercised


@pytest.mark.parametrize("max_pooling", [True, False], ids=["max", "sum"])
def test_encoding_without_gradients_equals_the_plain_computation(max_pooling):
    """Encoding keeps no winning positions (max) and no graph: the same values, in fp32 and
    under bf16 autocast (compared with the plain computation in bf16)."""
    states, mask, weight, bias = (t.detach() for t in leaves(0))
    with torch.inference_mode():
        expected = plain(states, mask, weight, bias, max_pooling)
        got = pooled_term_weights(states, mask, weight, bias, max_pooling, chunk=3)
        assert torch.allclose(got, expected, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected = plain(states, mask, weight, bias, max_pooling).float()
            got = pooled_term_weights(states, mask, weight, bias, max_pooling, chunk=3).float()
        assert torch.allclose(got, expected, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("pooling", ["max", "sum"])
def test_a_splade_model_encodes_and_learns_alike_chunked_or_not(
    masked_lm_dir, monkeypatch, pooling
):
    texts = ["honey bees pollinate flowering plants", "lava", "a bee colony has one queen"]
    config = Splade(
        name_or_path=str(masked_lm_dir), pooling=SparsePooling[pooling], config_overrides=NO_DROPOUT
    )
    results = []
    for chunk in (2, None):
        monkeypatch.setattr(SpladeEncoder, "pooling_chunk", chunk)
        model = config.build().train()
        reps = model.forward_documents(texts)
        (reps.sum() + reps.pow(2).sum()).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        results.append((reps.detach(), grads))
    (chunked, chunked_grads), (whole, whole_grads) = results
    assert torch.allclose(chunked, whole, atol=1e-5)
    assert chunked_grads.keys() == whole_grads.keys()
    for name, gradient in whole_grads.items():
        assert torch.allclose(chunked_grads[name], gradient, atol=1e-5), name


def test_micro_batches_of_chunked_splade_equal_the_plain_whole_batch(
    masked_lm_dir,
    records,
    monkeypatch,
):
    config = Splade(name_or_path=str(masked_lm_dir), config_overrides=NO_DROPOUT)
    losses = {"rank": InfoNCE(scale=1.0), "flops": Flops(query_weight=0.3, doc_weight=0.1)}
    monkeypatch.setattr(SpladeEncoder, "pooling_chunk", None)
    whole, whole_grads = gradients_of(config, losses, FixedBatcher(batch_size=6), records)
    monkeypatch.setattr(SpladeEncoder, "pooling_chunk", 4)
    split, split_grads = gradients_of(config, losses, MicroBatcher(batch_size=6, micro=4), records)
    assert split == pytest.approx(whole, abs=1e-5)
    for name, gradient in whole_grads.items():
        assert torch.allclose(split_grads[name], gradient, atol=1e-5), name
