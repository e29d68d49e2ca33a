"""The CPU dropout swapped into loaded models (models/dropout.py): gradients are those of its
forward pass, it drops at the asked rate and scales the rest, and it is nn.Dropout elsewhere."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xpretrieval.models import Dense
from xpretrieval.models.dropout import FastDropout, _Dropout, bernoulli_mask, zero_dropped


def test_gradients_are_those_of_the_forward_pass():
    x = torch.randn(4, 5, 6, dtype=torch.float64, requires_grad=True)

    def drop(x):  # reseeded: the same mask at every call gradcheck makes
        torch.manual_seed(0)
        return _Dropout.apply(x, 0.3)

    assert torch.autograd.gradcheck(drop, (x,))


def test_drops_at_the_rate_and_scales_what_it_keeps():
    dropout = FastDropout(0.2).train()
    x = torch.rand(200, 500) + 1
    y = dropout(x)
    assert (y == 0).float().mean().item() == pytest.approx(0.2, abs=0.005)
    assert torch.allclose(y[y != 0], (x / 0.8)[y != 0])
    assert torch.equal(dropout.eval()(x), x)


def test_loaded_models_use_it_in_place_of_nn_dropout(tiny_model_dir):
    model = Dense(name_or_path=str(tiny_model_dir)).build()
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(type(m) is FastDropout and m.p == 0.1 for m in dropouts)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9, 0.001])
def test_masks_are_true_at_the_rate_in_every_position_and_repeat_with_the_seed(rate):
    torch.manual_seed(3)
    mask = bernoulli_mask(torch.Size([4000, 103]), rate)  # 103: not a multiple of 4 draws
    # four draws share a 64-bit number: each of its 16-bit lanes must be at the rate
    lanes = mask.flatten()[: 4 * (mask.numel() // 4)].view(-1, 4).float().mean(dim=0)
    spread = 4 * (rate * (1 - rate) / (mask.numel() / 4)) ** 0.5
    assert torch.allclose(lanes, torch.full((4,), rate), atol=spread)
    torch.manual_seed(3)
    assert torch.equal(bernoulli_mask(torch.Size([4000, 103]), rate), mask)


def test_a_rate_that_16_bits_cannot_keep_is_drawn_from_uniform_floats(monkeypatch):
    drawn = []
    monkeypatch.setattr(torch.Tensor, "uniform_", lambda self: drawn.append(1) or self.fill_(0.5))
    bernoulli_mask(torch.Size([8]), 0.1)  # 0.1 * 2^16 = 6553.6: rounding moves it by 6e-5
    assert not drawn
    bernoulli_mask(torch.Size([8]), 1e-5)  # 0.66 of a level: it would round to 1.5e-5
    assert drawn


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_zeroing_through_bytes_equals_boolean_masking_exactly(dtype):
    values = torch.randn(64, 33).to(dtype)
    dropped = bernoulli_mask(values.shape, 0.3)
    assert torch.equal(zero_dropped(values, dropped), torch.where(dropped, 0.0, values))
