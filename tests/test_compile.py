"""`model.compile`: encoding and pair scoring without gradients run through torch.compile and
give what the plain passes give; a training step runs the module itself; the flag is how a run
computes, not part of the saved model."""

from __future__ import annotations

import pickle

import pytest
import torch

from xpretrieval.core.device import Precision
from xpretrieval.models import ColBERT, CrossEncoder, Dense, Splade

TEXTS = [
    "honey bees pollinate flowering plants",
    "bees",
    "comets are icy bodies that orbit the sun and grow tails near it",
    "bread rises because yeast makes gas",
]


def built(make, folder):
    """The model plain and compiled, with the same new head (ColBERT's projection, the
    cross-encoder's classifier: drawn at build)."""
    models = []
    for compile_it in (False, True):
        torch.manual_seed(0)
        models.append(make(name_or_path=str(folder), compile=compile_it).build().eval())
    return models


@pytest.mark.parametrize("make", [Dense, ColBERT, Splade], ids=["dense", "colbert", "splade"])
def test_compiled_encoding_equals_the_plain_passes(make, tiny_model_dir, masked_lm_dir):
    plain, compiled = built(make, masked_lm_dir if make is Splade else tiny_model_dir)
    for side in ("encode_queries", "encode_documents"):
        expected, ours = getattr(plain, side)(TEXTS), getattr(compiled, side)(TEXTS)
        assert torch.allclose(ours, expected, atol=1e-5, rtol=0), side
    assert compiled.__dict__["_compiled_modules"]  # the passes did run compiled


def test_compiled_pair_scores_equal_the_plain_ones(tiny_model_dir):
    plain, compiled = built(CrossEncoder, tiny_model_dir)
    with torch.inference_mode():
        expected, ours = plain.score_texts(TEXTS[:2], TEXTS), compiled.score_texts(TEXTS[:2], TEXTS)
    assert torch.allclose(ours, expected, atol=1e-5, rtol=0)
    assert compiled.__dict__["_compiled_modules"]


def test_training_runs_the_module_itself_and_the_flag_is_not_saved(tiny_model_dir, tmp_path):
    model = Dense(name_or_path=str(tiny_model_dir), compile=True).build().train()
    encoder = model.side_encoder(is_query=False)
    assert model.running(encoder) is encoder  # gradients on: a training step
    with torch.no_grad():  # GradCache's first pass: no gradients, still training
        assert model.running(encoder) is encoder
    model.eval()
    with torch.inference_mode():
        assert model.running(encoder) is not encoder
    assert "_compiled_modules" not in pickle.loads(pickle.dumps(model)).__dict__
    model.save(tmp_path / "saved")
    assert "compile" not in (tmp_path / "saved" / "xpretrieval_model.yaml").read_text()


def test_compiled_code_follows_the_weights_when_they_change(tiny_model_dir, monkeypatch):
    """Freezing folds the weights into the compiled code (in bf16, their casts): after an
    update of the weights (validation between training steps) the compiled passes give the new
    weights' vectors, not the old ones', and the module is compiled once more, not frozen, so
    that later updates need no new compile."""
    plain, compiled = built(Dense, tiny_model_dir)
    compiles, compile_ = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda *a, **k: compiles.append(1) or compile_(*a, **k))

    def encode(model):
        return model.encode_documents(TEXTS, precision=Precision.bf16)

    before = encode(compiled)
    for update in range(2):
        with torch.no_grad():  # every weight, in place, as an optimizer step changes them
            for model in (plain, compiled):
                for weight in model.parameters():
                    weight.mul_(1.5)
        after = encode(compiled)
        assert not torch.allclose(after, before, atol=1e-2), update
        assert torch.allclose(after, encode(plain), atol=2e-3, rtol=0), update
        before = after
    assert len(compiles) == 2  # frozen, then not
