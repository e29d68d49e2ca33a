"""Decoder-only (LLM) backbones: the EOS token closes each text, last-token pooling reads it,
batches are padded on the left; LoRA adapters train, save, reload and merge to the same
scores. On a tiny random LLaMA built in the test."""

from __future__ import annotations

import torch

import xpretrieval
from tests.conftest import TINY_BEIR
from xpretrieval.models import Dense

TEXTS = ["honey bees pollinate flowering plants", "lava"]


def decoder(model_dir, **fields) -> Dense:
    settings = {"pooling": "last", "append_eos": True, "padding_side": "left"}
    return Dense(name_or_path=str(model_dir), **{**settings, **fields})


def test_eos_closes_each_text_and_left_padding_leaves_it_last(tiny_decoder_dir):
    model = decoder(tiny_decoder_dir, doc_max_length=4).build()
    batch = model.pad(model.tokenize(TEXTS, is_query=False))
    eos = model.tokenizer.eos_token_id
    assert batch["input_ids"][:, -1].tolist() == [eos, eos]  # truncated to 3 words + EOS
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]  # padded left
    assert model.tokenizer.pad_token == "</s>"  # the tokenizer had none


def test_last_token_pooling_reads_the_eos_whatever_the_padding(tiny_decoder_dir):
    model = decoder(tiny_decoder_dir).build()
    with torch.no_grad():
        together = model.forward_documents(TEXTS)
        alone = model.forward_documents(TEXTS[1:])
        batch = model.pad(model.tokenize(TEXTS[1:], is_query=False))
        del batch["special_tokens_mask"]
        hidden = model.query_encoder(**batch).last_hidden_state
    # rotary positions are relative: left padding does not change the short text's vector
    assert torch.allclose(together[1], alone[0], atol=1e-5)
    expected = torch.nn.functional.normalize(hidden[0, -1], dim=-1)  # the EOS position
    assert torch.allclose(alone[0], expected, atol=1e-6)


def test_lora_trains_adapters_only_and_saves_reloads_and_merges(tiny_decoder_dir, tmp_path):
    model = decoder(tiny_decoder_dir, lora_rank=4, lora_dropout=0.0).build()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    with torch.no_grad():  # adapters start as a no-op (B = 0): give them a value
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
        adapted = model.forward_documents(TEXTS)
        base = decoder(tiny_decoder_dir).build().forward_documents(TEXTS)
    assert not torch.allclose(adapted, base, atol=1e-3)
    model.save(tmp_path / "adapters")
    assert (tmp_path / "adapters" / "adapter_config.json").is_file()
    assert not (tmp_path / "adapters" / "model.safetensors").exists()  # adapters only
    reloaded = xpretrieval.load(tmp_path / "adapters", device="cpu")
    with torch.no_grad():
        assert torch.allclose(reloaded.forward_documents(TEXTS), adapted, atol=1e-5)
    model.merge_lora()
    model.save(tmp_path / "merged")
    merged = xpretrieval.load(tmp_path / "merged", device="cpu")
    assert merged.config.lora_rank == 0 and not any(
        "lora_" in n for n, _ in merged.named_parameters()
    )
    with torch.no_grad():
        assert torch.allclose(merged.forward_documents(TEXTS), adapted, atol=1e-5)


def test_an_llm_with_lora_trains_end_to_end(tiny_decoder_dir, tmp_path):
    metrics = xpretrieval.train_from_overrides(
        [
            "+experiment=llm_lora",
            f"model.name_or_path={tiny_decoder_dir}",
            "dataset=beir_folder",
            f"dataset.train.beir_folder={TINY_BEIR}",
            "model.doc_max_length=32",
            "trainer.max_steps=2",
            "evaluation.top_k=10",
            "precision=fp32",
            "device=cpu",
        ],
        tmp_path,
    )
    assert 0 <= metrics["nDCG@10"] <= 1
    saved = tmp_path / "checkpoints" / "step-0000002"
    assert (saved / "adapter_config.json").is_file()
    assert "query_prompt: 'query: '" in (saved / "xpretrieval_model.yaml").read_text()
