"""`model.gradient_checkpointing=true`: each transformer layer runs again in backward instead of
keeping its activations, and one training step's gradients stay those of the plain step (to
1e-5: dense and SPLADE with dropout off and on, ColBERT, SparseEmbed, cross-encoders, LoRA
adapters). A training setting: not saved with the model, not part of an index's provenance,
changeable on resume; refused, naming it, for a transformers class that cannot checkpoint."""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch
import transformers
from omegaconf import OmegaConf
from torch.nn.modules.module import register_module_forward_pre_hook

import xpretrieval
from tests.conftest import tiny_overrides
from tests.test_grad_cache import NO_DROPOUT, gradients_of
from xpretrieval.commands.resume import check_resume_changes
from xpretrieval.commands.run_dir import record_config
from xpretrieval.core.errors import ConfigError
from xpretrieval.losses import Flops, InfoNCE
from xpretrieval.models import ColBERT, CrossEncoder, Dense, SparseEmbed, Splade
from xpretrieval.models.transformer import COMPONENT_FILE
from xpretrieval.retrieval.saved import index_provenance
from xpretrieval.training.batchers import FixedBatcher

DENSE_LOSSES = {"rank": InfoNCE(scale=20.0)}
SPLADE_LOSSES = {"rank": InfoNCE(scale=1.0), "flops": Flops(query_weight=0.3, doc_weight=0.1)}
ATTENTION = re.compile(r"Attention$")  # BertSelfAttention, LlamaAttention...


@contextmanager
def attention_starts() -> Iterator[list[str]]:
    """The attention modules that start running inside the context, by class name (module
    hooks run in a recomputed layer too)."""
    started: list[str] = []

    def record(module: torch.nn.Module, args: tuple) -> None:
        if ATTENTION.search(type(module).__name__):
            started.append(type(module).__name__)

    hook = register_module_forward_pre_hook(record)
    try:
        yield started
    finally:
        hook.remove()


def step_with_and_without(config, losses, records) -> tuple[dict, dict, dict[bool, int]]:
    """One step's gradients without and with checkpointing, and how many times attention
    modules started in each."""
    gradients, runs = [], {}
    for checkpointing in (False, True):
        with attention_starts() as started:
            checkpointed = replace(config, gradient_checkpointing=checkpointing)
            batcher = FixedBatcher(batch_size=6)
            gradients.append(gradients_of(checkpointed, losses, batcher, records)[1])
        runs[checkpointing] = len(started)
    return *gradients, runs


def assert_equal(plain: dict, checkpointed: dict) -> None:
    assert plain.keys() == checkpointed.keys() and plain
    for name, gradient in plain.items():
        assert torch.allclose(checkpointed[name], gradient, atol=1e-5), name


@pytest.mark.parametrize("dropout", ["off", "on"])
@pytest.mark.parametrize("kind", ["dense", "splade"])
def test_checkpointing_recomputes_the_layers_and_keeps_the_gradients(
    tiny_model_dir, masked_lm_dir, records, kind, dropout
):
    overrides = NO_DROPOUT if dropout == "off" else {}
    if kind == "dense":
        config = Dense(name_or_path=str(tiny_model_dir), config_overrides=overrides)
        losses = DENSE_LOSSES
    else:
        config = Splade(name_or_path=str(masked_lm_dir), config_overrides=overrides)
        losses = SPLADE_LOSSES
    plain, checkpointed, layer_runs = step_with_and_without(config, losses, records)
    # checkpointed, each layer runs again in backward (drawing the dropout of its first run)
    assert layer_runs[True] == 2 * layer_runs[False] > 0
    assert_equal(plain, checkpointed)


@pytest.mark.parametrize("kind", [ColBERT, SparseEmbed, CrossEncoder])
def test_every_transformer_kind_checkpoints(masked_lm_dir, records, kind):
    config = kind(name_or_path=str(masked_lm_dir), config_overrides=NO_DROPOUT)
    in_batch = kind is not CrossEncoder  # a cross-encoder scores its own pairs only
    losses = {"rank": InfoNCE(scale=1.0, in_batch_negatives=in_batch)}
    plain, checkpointed, layer_runs = step_with_and_without(config, losses, records)
    assert layer_runs[True] == 2 * layer_runs[False] > 0
    assert_equal(plain, checkpointed)


def test_lora_adapters_train_with_checkpointing(tiny_decoder_dir, records):
    settings = {"pooling": "last", "append_eos": True, "padding_side": "left"}
    config = Dense(name_or_path=str(tiny_decoder_dir), lora_rank=4, **settings)
    plain, checkpointed, layer_runs = step_with_and_without(config, DENSE_LOSSES, records)
    assert layer_runs[True] == 2 * layer_runs[False] > 0
    assert all("lora_" in name for name in plain)  # the frozen embeddings need no gradient
    assert_equal(plain, checkpointed)


def test_a_checkpointed_model_encodes_as_before_and_pickles(tiny_model_dir):
    texts = ["honey bees pollinate flowering plants", "lava"]
    plain = Dense(name_or_path=str(tiny_model_dir)).build()
    model = Dense(name_or_path=str(tiny_model_dir), gradient_checkpointing=True).build()
    assert torch.equal(model.encode_documents(texts), plain.encode_documents(texts))
    pickle.dumps(model)  # encoding workers (evaluation.devices) receive the model pickled


def test_the_setting_composes_from_the_command_line(tiny_model_dir, masked_lm_dir):
    dense = xpretrieval.configure(
        [*tiny_overrides(tiny_model_dir), "model.gradient_checkpointing=true"]
    )
    assert dense.model.gradient_checkpointing is True
    splade = xpretrieval.configure(
        [*tiny_overrides(masked_lm_dir), "model=splade", "model.gradient_checkpointing=true"]
    )
    assert isinstance(splade.model, Splade) and splade.model.gradient_checkpointing is True
    encoder = splade.model.build().query_encoder
    assert any(getattr(module, "gradient_checkpointing", False) for module in encoder.modules())


def test_a_class_that_cannot_checkpoint_is_refused(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(transformers.BertModel, "supports_gradient_checkpointing", False)
    config = Dense(name_or_path=str(tiny_model_dir), gradient_checkpointing=True)
    with pytest.raises(ConfigError, match=r"^model\.gradient_checkpointing: .* bert model"):
        config.build()


def test_the_setting_is_not_saved_with_the_model_nor_in_index_provenance(tiny_model_dir, tmp_path):
    model = Dense(name_or_path=str(tiny_model_dir), gradient_checkpointing=True).build()
    model.save(tmp_path)
    assert "gradient_checkpointing" not in (tmp_path / COMPONENT_FILE).read_text()
    assert not xpretrieval.load(tmp_path, device="cpu").config.gradient_checkpointing
    # not an architecture setting: the saved model loads with it either way
    Dense(name_or_path=str(tmp_path), gradient_checkpointing=True).build()
    documents = {"d1": "honey bees", "d2": "lava flows"}
    plain = Dense(name_or_path=str(tiny_model_dir)).build()
    assert index_provenance(model, documents) == index_provenance(plain, documents)


def test_a_resumed_run_may_switch_it(tiny_model_dir, tmp_path):
    experiment = xpretrieval.configure(tiny_overrides(tiny_model_dir))
    record_config(tmp_path, experiment, None)
    switched = replace(experiment, model=replace(experiment.model, gradient_checkpointing=True))
    check_resume_changes(switched, tmp_path)  # the same gradients: allowed
    shorter = replace(experiment, model=replace(experiment.model, doc_max_length=16))
    with pytest.raises(ConfigError, match=r"model\.doc_max_length: a resumed run cannot"):
        check_resume_changes(shorter, tmp_path)
    # the run's config records it (the model's saved settings do not)
    assert OmegaConf.load(tmp_path / "config.yaml").model.gradient_checkpointing is False
