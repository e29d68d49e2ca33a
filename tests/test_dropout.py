"""The CPU dropout swapped into loaded models (models/dropout.py): gradients are those of its
forward pass, it drops at the asked rate and scales the rest, and it is nn.Dropout elsewhere."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xpretrieval.models import Dense
from xpretrieval.models.dropout import FastDropout, _Dropout


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
