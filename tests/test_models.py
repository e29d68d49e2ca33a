"""Pooling against a hand-computed example, and the dense encoder's build/save/load contract."""

from __future__ import annotations

import pytest
import torch

from xpretrieval import load
from xpretrieval.core.errors import ConfigError
from xpretrieval.models import Dense, DenseBiEncoder, DenseEncoder, Pooling
from xpretrieval.models.pooling import pool

# two texts of 3 and 2 tokens (second padded), 2-dimensional token vectors
HIDDEN = torch.tensor([[[1.0, 4.0], [3.0, 0.0], [5.0, 2.0]], [[2.0, 2.0], [4.0, -2.0], [9.0, 9.0]]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (Pooling.cls, [[1.0, 4.0], [2.0, 2.0]]),
        (Pooling.mean, [[3.0, 2.0], [3.0, 0.0]]),  # the padded [9, 9] is ignored
        (Pooling.max, [[5.0, 4.0], [4.0, 2.0]]),
    ],
)
def test_pooling_matches_hand_computation(mode, expected):
    assert pool(HIDDEN, MASK, mode).tolist() == expected


@pytest.fixture(scope="module")
def encoder(tiny_model_dir) -> DenseEncoder:
    return Dense(name_or_path=str(tiny_model_dir), normalize=True).build().eval()


def test_dense_encoder_keeps_the_protocol(encoder):
    assert isinstance(encoder, DenseBiEncoder)
    with torch.no_grad():
        queries = encoder.forward_queries(["how do bees live", "what is a comet"])
        documents = encoder.forward_documents(["bees live in colonies", "comets", "bread"])
    assert queries.shape == (2, 32) and documents.shape == (3, 32)
    assert torch.allclose(queries.norm(dim=-1), torch.ones(2))  # normalize=True
    assert encoder.score(queries, documents).shape == (2, 3)


def test_padding_does_not_change_a_text_vector(encoder):
    with torch.no_grad():
        alone = encoder.forward_documents(["bees"])
        padded = encoder.forward_documents(["bees", "honey bees pollinate flowering plants"])[:1]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_save_and_load_round_trip(encoder, tmp_path):
    encoder.save(tmp_path / "saved")
    loaded = load(tmp_path / "saved").eval()
    assert loaded.config.normalize and loaded.config.pooling is Pooling.mean
    texts = ["what makes bread rise"]
    with torch.no_grad():
        assert torch.allclose(encoder.forward_queries(texts), loaded.forward_queries(texts))


def test_separate_encoders_save_and_load(tiny_model_dir, tmp_path):
    model = Dense(name_or_path=str(tiny_model_dir), shared=False).build()
    assert model.document_encoder is not None
    with torch.no_grad():
        next(model.document_encoder.parameters()).add_(1.0)  # make the two encoders differ
    model.save(tmp_path / "two")
    assert (tmp_path / "two" / "query").is_dir() and (tmp_path / "two" / "document").is_dir()
    loaded = Dense(name_or_path=str(tmp_path / "two"), shared=False).build().eval()
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.forward_documents(["x"]), loaded.forward_documents(["x"]))
        assert not torch.allclose(loaded.forward_documents(["x"]), loaded.forward_queries(["x"]))


def test_loading_a_saved_model_with_other_pooling_is_refused(encoder, tmp_path):
    encoder.save(tmp_path / "saved")
    with pytest.raises(
        ConfigError, match="saved with pooling=mean but the config asks for pooling=cls"
    ):
        Dense(name_or_path=str(tmp_path / "saved"), pooling=Pooling.cls, normalize=True).build()


def test_config_overrides_reach_the_hugging_face_config(tiny_model_dir):
    model = Dense(
        name_or_path=str(tiny_model_dir), config_overrides={"attention_probs_dropout_prob": 0.0}
    ).build()
    assert model.query_encoder.config.attention_probs_dropout_prob == 0.0
    with pytest.raises(ConfigError, match="config_overrides.no_such_field"):
        Dense(name_or_path=str(tiny_model_dir), config_overrides={"no_such_field": 1}).build()


def test_a_path_that_is_not_a_model_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="is a folder without config.json"):
        Dense(name_or_path=str(tmp_path)).build()
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="is not a loadable Hugging Face model"):
        Dense(name_or_path=str(tmp_path)).build()
