"""SPLADE term weights against a hand-computed example, pruning, decoding and the encoder."""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import pytest
import torch

from xpretrieval import load
from xpretrieval.core.errors import ConfigError
from xpretrieval.models import Dense, SparsePooling, Splade, SpladeEncoder
from xpretrieval.models.base import sparsity
from xpretrieval.models.splade import keep_top_k, splade_weights

E1, E2 = math.e - 1, math.e**2 - 1  # log(1 + relu(x)) = 1 and 2
# one text, 3 token positions, a 4-term vocabulary; the third position is masked out
LOGITS = torch.tensor([[[E1, -1.0, 0.0, E2], [E2, E1, -5.0, 0.0], [100.0, 100.0, 100.0, 100.0]]])
KEEP = torch.tensor([[1, 1, 0]])


@pytest.mark.parametrize(
    ("pooling", "expected"),
    [(SparsePooling.max, [2.0, 1.0, 0.0, 2.0]), (SparsePooling.sum, [3.0, 1.0, 0.0, 2.0])],
)
def test_term_weights_match_hand_computation(pooling, expected):
    weights = splade_weights(LOGITS, KEEP, pooling)
    assert weights[0].tolist() == pytest.approx(expected)


def test_top_k_pruning_keeps_the_largest_weights():
    weights = keep_top_k(splade_weights(LOGITS, KEEP, SparsePooling.sum), 2)
    assert weights[0].tolist() == pytest.approx([3.0, 0.0, 0.0, 2.0])
    assert keep_top_k(torch.tensor([[1.0, 2.0]]), 5).tolist() == [[1.0, 2.0]]


def test_sparsity_statistics():
    stats = sparsity(torch.tensor([[1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 3.0]]))
    assert stats == {"active_dims": 1.5, "sparsity_ratio": 0.625}


@pytest.fixture(scope="module")
def splade(tiny_model_dir) -> SpladeEncoder:
    config = Splade(name_or_path=str(tiny_model_dir), doc_max_active_dims=3, new_head_bias=0.0)
    return config.build().eval()


def test_a_checkpoint_without_mlm_head_gets_a_lexical_head_and_a_warning(tiny_model_dir, caplog):
    with caplog.at_level(logging.WARNING):
        model = Splade(name_or_path=str(tiny_model_dir), new_head_bias=-2.5).build()
    assert "has no masked-LM head" in caplog.text
    encoder = model.query_encoder
    output = encoder.get_output_embeddings()
    assert output.weight is encoder.get_input_embeddings().weight
    assert torch.equal(output.bias, torch.full_like(output.bias, -2.5))
    transform = encoder.cls.predictions.transform.dense
    assert torch.equal(transform.weight, torch.eye(transform.in_features))
    assert not transform.bias.any()


def naver_splade(model, texts: list[str], pooling: str) -> torch.Tensor:
    """naver/splade's formula written out: `pool_i log(1 + relu(logits_i)) * attention_mask_i`
    over every attended position, [CLS] and [SEP] included."""
    batch = model.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model.query_encoder(**batch).logits
    weights = torch.log1p(torch.relu(logits)) * batch["attention_mask"].unsqueeze(-1)
    return weights.amax(dim=1) if pooling == "max" else weights.sum(dim=1)


TEXTS = ["honey bees pollinate", "volcanoes erupt molten lava, ash and gas"]


def test_encoder_pools_every_attended_position_as_naver_splade(splade):
    assert torch.allclose(
        splade.forward_queries(TEXTS), naver_splade(splade, TEXTS, "max"), atol=1e-6
    )
    cls = splade.tokenizer.cls_token_id  # the lexical head makes [CLS] weigh on itself
    assert splade.forward_queries(TEXTS)[:, cls].gt(0).all()


def test_special_tokens_can_be_left_out(tiny_model_dir):
    config = Splade(
        name_or_path=str(tiny_model_dir), new_head_bias=0.0, exclude_special_tokens=True
    )
    model = config.build()
    text = "honey bees pollinate"
    batch = model.tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        logits = model.query_encoder(**batch).logits[0, 1:-1]  # without [CLS] and [SEP]
        expected = torch.log1p(torch.relu(logits)).amax(dim=0)
        assert torch.allclose(model.forward_queries([text])[0], expected, atol=1e-6)


@pytest.mark.parametrize("pooling", ["max", "sum"])
def test_term_weights_equal_sentence_transformers_sparse_encoder(masked_lm_dir, pooling):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer

    reference = SparseEncoder(
        modules=[
            Transformer(str(masked_lm_dir), transformer_task="fill-mask", max_seq_length=32),
            SpladePooling(pooling_strategy=pooling),
        ],
        device="cpu",
    )
    expected = reference.encode(TEXTS, convert_to_tensor=True).to_dense()
    ours = Splade(
        name_or_path=str(masked_lm_dir), pooling=SparsePooling[pooling], doc_max_length=32
    )
    model = ours.build()
    assert torch.allclose(model.forward_documents(TEXTS), expected, atol=1e-6)
    assert torch.allclose(
        model.forward_documents(TEXTS), naver_splade(model, TEXTS, pooling), atol=1e-6
    )
    excluded = replace(ours, exclude_special_tokens=True).build().forward_documents(TEXTS)
    assert (excluded - expected).abs().max() > 1e-3  # the comparison can tell the two apart


def test_documents_are_pruned_when_encoding_but_not_in_training(splade):
    texts = ["honey bees pollinate flowering plants", "lava"]
    with torch.no_grad():
        pruned = splade.forward_documents(texts)
        splade.train()
        full = splade.forward_documents(texts)
        splade.eval()
    assert ((pruned > 0).sum(dim=-1) <= 3).all()
    assert ((full > 0).sum(dim=-1) > 3).all()
    assert pruned.shape == (2, len(splade.tokenizer))


def test_decode_lists_tokens_by_weight(splade):
    reps = torch.zeros(1, len(splade.tokenizer))
    bees, lava = splade.tokenizer.convert_tokens_to_ids(["bees", "lava"])
    reps[0, bees], reps[0, lava] = 0.5, 2.0
    assert splade.decode(reps, top_k=5) == [[("lava", 2.0), ("bees", 0.5)]]


def test_save_and_load_round_trip(splade, tmp_path):
    splade.save(tmp_path / "splade")
    loaded = load(tmp_path / "splade").eval()
    assert loaded.config.doc_max_active_dims == 3
    with torch.no_grad():
        assert torch.allclose(loaded.forward_queries(["bees"]), splade.forward_queries(["bees"]))
    with pytest.raises(ConfigError, match="does not describe a Dense model"):
        Dense(name_or_path=str(tmp_path / "splade")).build()


def test_a_built_model_encodes_in_eval_mode_with_pruning(tiny_model_dir):
    model = Splade(
        name_or_path=str(tiny_model_dir), doc_max_active_dims=2, new_head_bias=0.0
    ).build()
    assert not model.training
    with torch.no_grad():
        assert (model.forward_documents(["honey bees pollinate flowering plants"]) > 0).sum() <= 2
