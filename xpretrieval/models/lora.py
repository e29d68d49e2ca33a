"""LoRA adapters (Hu et al., ICLR 2022) through peft: train low-rank updates of a large
backbone instead of all its weights, as tevatron fine-tunes LLM retrievers and re-rankers. A
model with `lora_rank > 0` saves only its adapters (peft's files, which name their base model;
a classifier's head with them) and reloads them on that base; `merged` folds them into the
weights for a plain checkpoint."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

from xpretrieval.core.errors import ConfigError

ADAPTER_FILE = "adapter_config.json"


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise ConfigError(
            "model.lora_rank > 0 needs peft: pip install 'xpretrieval[llm]'"
        ) from None
    return peft


def is_adapter(path: str | Path) -> bool:
    """Whether `path` is a folder of LoRA adapters saved by peft."""
    return (Path(path) / ADAPTER_FILE).is_file()


def with_lora(
    model: Any, rank: int, alpha: float, dropout: float, targets: list[str] | None
) -> Any:
    """`model` with new trainable LoRA adapters on `targets` (None: peft's choice for the
    architecture, e.g. the attention's query and value projections); the rest is frozen but
    a sequence classifier's head (BERT's `classifier`, a decoder's `score`), new and small,
    which trains in full and is saved with the adapters (peft's SEQ_CLS task, as RankLLaMA's)."""
    peft = _peft()
    classifier = type(model).__name__ in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.values()
    settings = peft.LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        task_type="SEQ_CLS" if classifier else None,
    )
    return peft.get_peft_model(model, settings)


def load_adapter(path: str | Path, load_base: Callable[[str], Any]) -> Any:
    """The base model named in the adapters' config, loaded by `load_base`, with the saved
    adapters on it (trainable, so that training can continue)."""
    base = json.loads((Path(path) / ADAPTER_FILE).read_text(encoding="utf-8"))
    name = base.get("base_model_name_or_path")
    if not name:
        raise ConfigError(f"{Path(path) / ADAPTER_FILE} does not name its base model")
    return _peft().PeftModel.from_pretrained(load_base(name), str(path), is_trainable=True)


def unwrapped(model: Any) -> Any:
    """The Hugging Face model under peft's wrapper, with the adapters in its layers and
    active (`model` itself when unwrapped), to call its parts: its backbone, its head."""
    peft = sys.modules.get("peft")  # a model wrapped by peft means that peft is imported
    return model.get_base_model() if peft and isinstance(model, peft.PeftModel) else model


def merged(model: Any) -> Any:
    """The plain model with its adapters folded into its weights (the model itself if it has
    none)."""
    peft = _peft()
    return model.merge_and_unload() if isinstance(model, peft.PeftModel) else model
