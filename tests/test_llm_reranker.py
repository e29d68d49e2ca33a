"""Decoder-only (LLM) re-rankers, RankLLaMA's way, through the cross-encoder: the pair is closed
by the EOS token, a linear head scores the last real token's hidden state whichever side pads,
LoRA adapters and the head train, save and reload to the same scores, and the experiment
re-ranks BM25's candidates. On a tiny random LLaMA built in the test."""

from __future__ import annotations

import json

import pytest
import torch

import xpretrieval
from tests.conftest import TINY_BEIR, tiny_overrides
from xpretrieval.core.errors import ConfigError
from xpretrieval.data.collection import Collection
from xpretrieval.data.run import read_trec_run
from xpretrieval.models import CrossEncoder, CrossEncoderModel

QUERIES = ["what do bees make", "lava"]  # different lengths: the batch pads
DOCUMENTS = ["honey bees make honey from the nectar of flowers", "volcanoes"]
PROMPTS = {"query_prompt": "query: ", "document_prompt": "document: "}


def reranker(model_dir, **fields) -> CrossEncoderModel:
    settings = {"append_eos": True, "padding_side": "left", **PROMPTS}
    return CrossEncoder(name_or_path=str(model_dir), **{**settings, **fields}).build()


def by_hand(model: CrossEncoderModel, query: str, document: str) -> torch.Tensor:
    """The Hugging Face classifier's `score` layer on the last hidden state of the unpadded
    pair "query: q" "document: d" followed by the EOS token."""
    tokenizer = model.tokenizer
    ids = tokenizer("query: " + query, "document: " + document)["input_ids"]
    ids = torch.tensor([ids + [tokenizer.eos_token_id]])
    classifier = model.query_encoder
    return classifier.score(classifier.model(ids).last_hidden_state[0, -1])[0]


@pytest.mark.parametrize("side", ["left", "right"])
def test_the_score_is_the_head_on_the_last_real_token(tiny_decoder_dir, side):
    model = reranker(tiny_decoder_dir, padding_side=side)
    with torch.no_grad():
        scores = model.score_texts(QUERIES, DOCUMENTS)  # the four pairs in one padded batch
        expected = torch.tensor([[by_hand(model, q, d) for d in DOCUMENTS] for q in QUERIES])
    mask = model.tokenize_pairs(QUERIES, DOCUMENTS)["attention_mask"]
    padded = 0 if side == "left" else -1
    assert mask[:, padded].tolist() == [1, 0]  # the short pair is padded on that side
    assert torch.allclose(scores, expected, atol=1e-5)


def test_a_pair_cut_to_the_length_still_ends_with_the_eos(tiny_decoder_dir):
    model = reranker(tiny_decoder_dir, query_max_length=4, doc_max_length=4)
    ids = model.tokenize_pairs(QUERIES, DOCUMENTS)["input_ids"]
    assert ids.shape[1] == 8 and ids[:, -1].tolist() == [model.tokenizer.eos_token_id] * 2


def test_lora_trains_adapters_and_head_saves_reloads_and_merges(tiny_decoder_dir, tmp_path):
    model = reranker(tiny_decoder_dir, lora_rank=4, lora_dropout=0.0)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any(".score." in name for name in trainable)  # the new head trains in full
    assert all("lora_" in name or ".score." in name for name in trainable)
    with torch.no_grad():  # adapters start as a no-op (B = 0): give them and the head a value
        for name, parameter in model.named_parameters():
            if "lora_B" in name or ".score." in name:
                parameter.normal_(std=0.5)
        adapted = model.score_texts(QUERIES, DOCUMENTS)
    model.save(tmp_path / "adapters")
    assert (tmp_path / "adapters" / "adapter_config.json").is_file()
    assert not (tmp_path / "adapters" / "model.safetensors").exists()  # adapters and head only
    reloaded = xpretrieval.load(tmp_path / "adapters", device="cpu")
    assert isinstance(reloaded, CrossEncoderModel) and reloaded.config.append_eos
    with torch.no_grad():
        assert torch.allclose(reloaded.score_texts(QUERIES, DOCUMENTS), adapted, atol=1e-5)
    model.merge_lora()
    model.save(tmp_path / "merged")
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    merged = xpretrieval.load(tmp_path / "merged", device="cpu")
    with torch.no_grad():
        assert torch.allclose(merged.score_texts(QUERIES, DOCUMENTS), adapted, atol=1e-5)


def test_lora_on_an_encoder_cross_encoder_trains_its_classifier(tiny_model_dir):
    model = CrossEncoder(name_or_path=str(tiny_model_dir), lora_rank=4).build()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any(".classifier." in name for name in trainable)


def test_an_llm_reranker_trains_with_lora_and_reranks_bm25(tiny_decoder_dir, tmp_path):
    metrics = xpretrieval.train_from_overrides(
        [
            "+experiment=llm_rerank",
            *tiny_overrides(tiny_decoder_dir),
            "model.lora_rank=4",
            "sampler.negatives=3",
            "sampler.hard_negatives.top_k=5",
            "evaluation.rerank.top_k=5",
            "precision=fp32",
        ],
        tmp_path,
    )
    assert 0 < metrics["nDCG@10"] <= 1
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["index"]["candidates_per_query"] <= 5  # BM25's top 5, re-ranked
    checkpoint = tmp_path / "checkpoints" / "step-0000006"
    assert (checkpoint / "adapter_config.json").is_file()
    # the saved checkpoint reloads to the scores the run was measured with
    saved = xpretrieval.load(checkpoint, device="cpu")
    collection = Collection.from_beir(TINY_BEIR, "test")
    for query_id, ranked in read_trec_run(tmp_path / "run.trec").items():
        documents = [collection.documents[doc] for doc, _ in ranked]
        with torch.no_grad():
            scores = saved.score_texts([collection.queries[query_id]], documents)[0]
        assert torch.allclose(scores, torch.tensor([s for _, s in ranked]), atol=1e-5)


def test_an_llm_reranker_needs_a_checkpoint_named():
    with pytest.raises(ConfigError, match=r"^model.name_or_path: no value given"):
        xpretrieval.configure(["+experiment=llm_rerank"])  # no default causal LM
