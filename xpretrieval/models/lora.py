"""LoRA adapters (Hu et al., ICLR 2022) through peft: train low-rank updates of a large
backbone instead of all its weights, as tevatron fine-tunes LLM retrievers. A model with
`lora_rank > 0` saves only its adapters (peft's files, which name their base model) and
reloads them on that base; `merged` folds them into the weights for a plain checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    architecture, e.g. the attention's query and value projections); the rest is frozen."""
    peft = _peft()
    settings = peft.LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets
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


def merged(model: Any) -> Any:
    """The plain model with its adapters folded into its weights (the model itself if it has
    none)."""
    peft = _peft()
    return model.merge_and_unload() if isinstance(model, peft.PeftModel) else model
