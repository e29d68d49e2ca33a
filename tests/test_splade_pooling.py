"""SPLADE pooled by chunks of positions (no [batch, length, vocabulary] logits), and screened by
a bf16 product: the values and the gradients of the plain computation, for max and sum
pooling, in a model, and with GradCache micro-batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.test_grad_cache import NO_DROPOUT, gradients_of
from xpretrieval.losses import Flops, InfoNCE
from xpretrieval.models import SparsePooling, Splade, SpladeEncoder, splade
from xpretrieval.models.splade_pooling import SCREEN_MARGIN, _logits, pooled_term_weights
from xpretrieval.training.batchers import FixedBatcher, MicroBatcher


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


@pytest.mark.parametrize("screen", [False, True], ids=["exact", "screened"])
@pytest.mark.parametrize("max_pooling", [True, False], ids=["max", "sum"])
@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_chunked_values_and_gradients_equal_the_plain_computation(max_pooling, chunk, screen):
    upstream = torch.randn(3, 11, generator=torch.Generator().manual_seed(9))
    results = []
    for compute in (plain, lambda *a: pooled_term_weights(*a, chunk=chunk, screen=screen)):
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


def test_bf16_logits_stay_within_the_screening_bound():
    """Screening trusts |bf16 logit - fp32 logit| <= SCREEN_MARGIN |w| |h|: checked on states
    and decoder rows of very different scales, at a realistic width."""
    generator = torch.Generator().manual_seed(0)
    scales = torch.logspace(-2, 2, 16)
    states = torch.randn(16, 32, 384, generator=generator) * scales[:, None, None]
    states[:, :4] = torch.rand(16, 4, 384, generator=generator) * 5  # one-signed: no cancelling
    weight = torch.randn(2000, 384, generator=generator) * torch.logspace(-2, 1, 2000)[:, None]
    exact = torch.einsum("blh,vh->blv", states.double(), weight.double())
    rough = _logits(states.bfloat16(), weight.bfloat16()).double()
    bound = SCREEN_MARGIN * states.norm(dim=-1)[..., None] * weight.norm(dim=1)
    assert ((rough - exact).abs() <= bound).all()
    assert ((rough - exact).abs() / bound).max() > 0.05  # the bound is not vacuous


def test_screening_keeps_every_weight_that_is_barely_positive():
    """Max logits between 1e-5 and 1e-4 of zero, on either side (far inside the screen's
    slack, beyond fp32 rounding: the exact pass of the screen multiplies other shapes than the
    plain pass, so BLAS sums in other orders): the screened weights are the plain ones, the
    same terms non-zero, the gradients the same."""
    generator = torch.Generator().manual_seed(3)
    states = torch.randn(4, 9, 64, generator=generator, requires_grad=True)
    weight = torch.randn(500, 64, generator=generator, requires_grad=True)
    mask = torch.ones(4, 9)
    mask[1, 6:] = 0
    with torch.no_grad():
        peak = F.linear(states, weight).masked_fill(~mask.bool()[..., None], -1e9).amax(1)
        uniform = torch.rand(500, generator=generator) * 2 - 1
        offsets = uniform.sign() * (1e-5 + uniform.abs() * 9e-5)
        bias = (offsets - peak[0]).requires_grad_()  # text 0's max logits: +-1e-4 around 0
    results = []
    for screen in (False, True):
        values = pooled_term_weights(states, mask, weight, bias, True, chunk=4, screen=screen)
        values.sum().backward()
        results.append((values.detach(), states.grad.clone(), weight.grad.clone()))
        for leaf in (states, weight, bias):
            leaf.grad = None
    (exact, *exact_grads), (screened, *screened_grads) = results
    assert 100 < int((exact[0] > 0).sum()) < 400  # both sides of zero are exercised
    assert torch.equal(exact > 0, screened > 0) and torch.allclose(exact, screened, atol=1e-5)
    for got, expected in zip(screened_grads, exact_grads, strict=True):
        assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("screen", [False, True], ids=["exact", "screened"])
@pytest.mark.parametrize("pooling", ["max", "sum"])
def test_a_splade_model_encodes_and_learns_alike_chunked_or_not(
    masked_lm_dir, monkeypatch, pooling, screen
):
    texts = ["honey bees pollinate flowering plants", "lava", "a bee colony has one queen"]
    config = Splade(
        name_or_path=str(masked_lm_dir), pooling=SparsePooling[pooling], config_overrides=NO_DROPOUT
    )
    monkeypatch.setattr(splade, "_screens_fast", lambda device: screen)  # whatever this CPU
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
