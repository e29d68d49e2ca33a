"""The attention that keeps only the dropout mask for backward (models/attention.py): its
gradients are those of its forward pass, it equals SDPA without dropout, drops at the asked
rate while keeping a fraction of SDPA's memory, and models switch to it only where it applies."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from xpretrieval.models import Dense, attention
from xpretrieval.models.attention import NAME, _DropoutAttention


def inputs(dtype=torch.float32, batch=3, heads=2, length=6, width=4):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(batch, heads, length, width, generator=generator, dtype=dtype).requires_grad_()
        for _ in range(3)
    )
    mask = torch.ones(batch, 1, length, length, dtype=torch.bool)
    mask[1, ..., 4:] = False  # key padding, as transformers' SDPA masks say it
    return q, k, v, mask


@pytest.mark.parametrize("texts_per_chunk", [1, 2, 3])
def test_gradients_are_those_of_the_forward_pass_with_dropout(monkeypatch, texts_per_chunk):
    monkeypatch.setattr(attention, "SCORES_PER_CHUNK", texts_per_chunk * 2 * 6 * 6)
    q, k, v, mask = inputs(torch.float64)

    def attend(q, k, v):  # reseeded: the same dropout mask at every call gradcheck makes
        torch.manual_seed(0)
        return _DropoutAttention.apply(q, k, v, mask, 0.3, 0.5)

    assert torch.autograd.gradcheck(attend, (q, k, v))
    undropped = _DropoutAttention.apply(q, k, v, mask, 0.0, 0.5)
    assert not torch.allclose(attend(q, k, v), undropped)  # some probabilities were dropped


@pytest.mark.parametrize(
    ("additive", "dtype", "tolerance"),
    [(False, torch.float32, 1e-5), (True, torch.float32, 1e-5), (False, torch.bfloat16, 3e-2)],
    ids=["bool mask", "additive mask", "bf16"],
)
def test_without_dropout_values_and_gradients_equal_sdpa(monkeypatch, additive, dtype, tolerance):
    monkeypatch.setattr(attention, "SCORES_PER_CHUNK", 2 * 6 * 6)  # several chunks
    q, k, v, mask = inputs(dtype)
    if additive:
        mask = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    upstream = torch.randn(q.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    results = []
    for attend in (
        lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        lambda: _DropoutAttention.apply(q, k, v, mask, 0.0, q.shape[-1] ** -0.5),
    ):
        output = attend()
        (output * upstream).sum().backward()
        results.append([output.detach(), *(t.grad.clone() for t in (q, k, v))])
        for t in (q, k, v):
            t.grad = None
    for got, expected in zip(*results, strict=True):
        assert got.dtype == dtype and torch.allclose(got, expected, atol=tolerance, rtol=tolerance)


def test_bf16_with_dropout_stays_within_bf16_error_of_the_exact_computation(monkeypatch):
    """bf16 keeps scores and probabilities in bf16: values and gradients stay within bf16's
    error (2^-8) of fp64 run on the same inputs with the same dropout mask."""
    monkeypatch.setattr(attention, "SCORES_PER_CHUNK", 2 * 2 * 32 * 32)  # several chunks
    q, k, v, mask = inputs(torch.bfloat16, batch=6, heads=2, length=32, width=8)
    mask[1, ..., 20:] = False
    upstream = torch.randn(q.shape, generator=torch.Generator().manual_seed(1))
    results = []
    for dtype in (torch.bfloat16, torch.float64):
        leaves = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
        torch.manual_seed(0)
        output = _DropoutAttention.apply(*leaves, mask, 0.2, 8**-0.5)
        (output * upstream.to(dtype)).sum().backward()
        results.append([output.detach(), *(t.grad for t in leaves)])
    for got, exact in zip(*results, strict=True):
        assert got.dtype == torch.bfloat16
        error = (got.double() - exact).norm() / exact.norm()
        assert error < 2**-6, error


def saved_bytes(attend) -> tuple[int, list[torch.Tensor]]:
    """The bytes `attend()` keeps for backward, and the boolean tensors among them."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        attend()
    return sum(t.numel() * t.element_size() for t in saved), [
        t for t in saved if t.dtype == torch.bool
    ]


def test_drops_at_the_asked_rate_and_keeps_a_fraction_of_sdpa_memory():
    q, k, v, mask = (t.detach() for t in inputs(batch=8, heads=4, length=64, width=8))
    q.requires_grad_()
    ours, booleans = saved_bytes(lambda: _DropoutAttention.apply(q, k, v, mask, 0.1, 0.35))
    sdpa, _ = saved_bytes(lambda: F.scaled_dot_product_attention(q, k, v, mask, dropout_p=0.1))
    dropped = [t for t in booleans if t.numel() == 8 * 4 * 64 * 64]
    assert len(dropped) == 1 and dropped[0].float().mean().item() == pytest.approx(0.1, abs=0.01)
    scores = 8 * 4 * 64 * 64
    inputs_and_output = 4 * q.numel() * q.element_size() + mask.numel()
    assert ours == inputs_and_output + scores  # 1 byte a score: the dropout mask
    assert sdpa >= 8 * scores  # softmax output and dropped probabilities, 4 bytes each


def test_models_switch_to_it_and_encode_as_with_sdpa(tiny_model_dir, tmp_path, monkeypatch):
    calls, original = [], _DropoutAttention.apply
    monkeypatch.setattr(_DropoutAttention, "apply", lambda *a: calls.append(1) or original(*a))
    config = Dense(name_or_path=str(tiny_model_dir), normalize=False)
    model = config.build()
    encoder = model.query_encoder
    assert encoder.config._attn_implementation == NAME
    sdpa = Dense(name_or_path=str(tiny_model_dir), normalize=False).build()
    sdpa.query_encoder.set_attn_implementation("sdpa")
    texts = ["honey bees pollinate flowering plants", "lava", "a bee colony has one queen"]
    with torch.no_grad():
        assert torch.allclose(
            model.eval().forward_queries(texts), sdpa.eval().forward_queries(texts), atol=1e-6
        )
    assert not calls  # no dropout in eval mode: SDPA itself
    model.train()
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        reps = model.forward_queries(texts)
        reps.sum().backward()
        runs.append(reps.detach())
    assert calls and torch.equal(runs[0], runs[1])  # dropout drawn from torch's generator
    model.save(tmp_path / "saved")
    assert NAME not in (tmp_path / "saved" / "config.json").read_text()
    assert "architectures" in json.loads((tmp_path / "saved" / "config.json").read_text())
