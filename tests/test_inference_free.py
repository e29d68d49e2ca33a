"""Inference-free SPLADE: queries are a learned weight per token (no transformer), documents
SPLADE's term weights; IDF initialisation, training, the inverted index, and a folder that
sentence-transformers' SparseEncoder loads and encodes the same."""

from __future__ import annotations

import json
import math

import pytest
import torch

import xpretrieval
from tests.conftest import TINY_BEIR, tiny_overrides
from xpretrieval.core.errors import ConfigError
from xpretrieval.data.collection import Collection
from xpretrieval.models.inference_free import InferenceFreeSplade, QueryWeightsInit

TEXTS = ["honey bees pollinate flowering plants", "volcanoes erupt lava"]


@pytest.fixture
def model(masked_lm_dir):
    return InferenceFreeSplade(name_or_path=str(masked_lm_dir)).build()


def test_a_query_is_its_tokens_static_weights(model):
    with torch.no_grad():
        model.query_weights.weight.copy_(torch.arange(len(model.query_weights.weight)) / 10)
        reps = model.forward_queries(["bees bees lava"])  # a repeat counts once
    ids = model.tokenizer("bees lava", add_special_tokens=False)["input_ids"]
    expected = torch.zeros_like(reps[0])
    expected[ids] = torch.tensor(ids, dtype=expected.dtype) / 10
    assert torch.equal(reps[0], expected)  # special tokens ([CLS], [SEP]) are left out
    documents = model.forward_documents(TEXTS)  # SPLADE's: one pass through the masked LM
    assert documents.shape[1] == reps.shape[1] and (documents >= 0).all()


def test_idf_initialisation_from_the_training_documents(masked_lm_dir):
    collection = Collection.from_beir(TINY_BEIR, "train")
    config = InferenceFreeSplade(name_or_path=str(masked_lm_dir), query_weights_init="idf")
    model = config.build()
    model.prepare(collection)
    weights, n = model.query_weights.weight, len(collection.documents)
    bees = model.tokenizer.convert_tokens_to_ids("bees")
    df = sum("bees" in model.tokenizer.tokenize(text) for text in collection.documents.values())
    assert weights[bees].item() == pytest.approx(math.log(1 + (n - df + 0.5) / (df + 0.5)))
    trained = weights.detach().clone()
    model.prepare(collection)  # weights no longer all ones (trained, loaded): left alone
    assert torch.equal(model.query_weights.weight, trained)
    assert InferenceFreeSplade(name_or_path=str(masked_lm_dir)).query_weights_init is (
        QueryWeightsInit.ones
    )


def test_saved_model_loads_in_sentence_transformers_and_back(model, tmp_path):
    from sentence_transformers import SparseEncoder

    with torch.no_grad():
        model.query_weights.weight.uniform_(0.5, 2.0)
        queries, documents = model.forward_queries(TEXTS), model.forward_documents(TEXTS)
    model.save(tmp_path / "model")
    theirs = SparseEncoder(str(tmp_path / "model"), device="cpu")
    assert torch.allclose(theirs.encode_query(TEXTS, convert_to_sparse_tensor=False), queries)
    their_documents = theirs.encode_document(TEXTS, convert_to_sparse_tensor=False)
    assert torch.allclose(their_documents, documents, atol=1e-5)
    ours = xpretrieval.load(tmp_path / "model", device="cpu")
    with torch.no_grad():
        assert torch.equal(ours.forward_queries(TEXTS), queries)
    (tmp_path / "model" / "xpretrieval_model.yaml").unlink()  # only sentence-transformers' files
    (tmp_path / "model" / "query_weights.safetensors").unlink()
    from_layout = xpretrieval.load(tmp_path / "model", device="cpu")
    assert isinstance(from_layout.config, InferenceFreeSplade)
    with torch.no_grad():
        assert torch.equal(from_layout.forward_queries(TEXTS), queries)


def test_separate_encoders_are_refused(masked_lm_dir):
    with pytest.raises(ValueError, match="shared must be true"):
        InferenceFreeSplade(name_or_path=str(masked_lm_dir), shared=False)


def test_inference_free_experiment_trains_and_searches_with_the_inverted_index(
    masked_lm_dir, tmp_path
):
    overrides = [*tiny_overrides(masked_lm_dir), "trainer.max_steps=2", "precision=fp32"]
    metrics = xpretrieval.train_from_overrides(
        ["+experiment=inference_free_splade", *overrides], tmp_path
    )
    assert 0 <= metrics["nDCG@10"] <= 1
    index = json.loads((tmp_path / "metrics.json").read_text())["index"]
    assert index["postings"] > 0 and index["query_active_dims"] > 0  # the inverted index's
    with pytest.raises(ConfigError, match="index: Inverted"):
        xpretrieval.configure(["model=colbert", "index=inverted"])
