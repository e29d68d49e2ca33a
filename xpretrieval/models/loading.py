"""`load(name_or_path)`: the model a folder or hub id holds, as the right kind of encoder,
whoever saved it: xpretrieval, sentence-transformers, naver/splade or plain transformers."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from xpretrieval.core.device import resolve_device
from xpretrieval.core.errors import ConfigError
from xpretrieval.models.base import TrainableModel
from xpretrieval.models.colbert import ColBERT
from xpretrieval.models.cross_encoder import CrossEncoder
from xpretrieval.models.dense import Dense
from xpretrieval.models.inference_free import InferenceFreeSplade
from xpretrieval.models.sentence_transformers_layout import model_layout
from xpretrieval.models.sparse_embed import SparseEmbed
from xpretrieval.models.splade import Splade
from xpretrieval.models.transformer import (
    COMPONENT_FILE,
    LAYOUT_ONLY,
    TransformerConfig,
    first_line,
    read_saved_settings,
)

KINDS: tuple[type[TransformerConfig], ...] = (
    Dense,
    Splade,
    InferenceFreeSplade,
    SparseEmbed,
    ColBERT,
    CrossEncoder,
)
LAYOUT_KINDS = {"dense": Dense, "splade": Splade, "inference_free_splade": InferenceFreeSplade}


def load(
    name_or_path: str | Path,
    device: str | None = None,
    backend: str = "torch",
    backend_quantization: str = "none",
) -> TrainableModel:
    """Build the encoder saved at `name_or_path` (a folder or a Hugging Face hub id):

    - a folder saved by xpretrieval: the kind and settings it was saved with;
    - a sentence-transformers folder or hub id: Dense (its pooling, normalisation, length)
      or SPLADE (SparseEncoder's SpladePooling);
    - a plain checkpoint, by its architecture: a masked LM is SPLADE (naver/splade's
      checkpoints), a sequence classifier a cross-encoder, anything else a Dense encoder
      with mean pooling.

    The model is put on `device`, by default the best available (cuda > mps > cpu), in eval
    mode: ready for `encode_queries` / `encode_documents`, which run on PyTorch or, with
    `backend="onnx"` or `"openvino"`, through the exported graph (`model.backend`).
    """
    config = config_for(str(name_or_path))
    if backend != "torch" or backend_quantization != "none":
        try:
            config = dataclasses.replace(
                config, backend=backend, backend_quantization=backend_quantization
            )
        except ValueError as error:
            given = f"backend={backend!r}, backend_quantization={backend_quantization!r}"
            raise ConfigError(f"load({given}): {error}") from None
    return config.build().to(resolve_device(device))


def config_for(name_or_path: str) -> TransformerConfig:
    """The model config `load` builds from (no weights are read)."""
    saved = Path(name_or_path) / COMPONENT_FILE
    if saved.is_file():
        return _saved_kind(saved, name_or_path)
    layout = model_layout(name_or_path)
    if layout is not None:
        kind = LAYOUT_KINDS[layout["kind"]]
        fields = {k: v for k, v in layout.items() if k not in LAYOUT_ONLY}
        return _build(kind, {"name_or_path": name_or_path, **fields})
    from transformers import AutoConfig

    try:
        architectures = AutoConfig.from_pretrained(name_or_path).architectures or []
    except (OSError, ValueError) as error:
        raise ConfigError(f"{name_or_path!r} is not a loadable model: {error}") from None
    if any(name.endswith("ForMaskedLM") for name in architectures):
        return Splade(name_or_path=name_or_path)
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        return CrossEncoder(name_or_path=name_or_path)
    # as sentence-transformers wraps a plain checkpoint: mean pooling, no normalisation
    return Dense(name_or_path=name_or_path, normalize=False)


def _saved_kind(file: Path, name_or_path: str) -> TransformerConfig:
    """The config class whose fields are the saved file's keys (`save` leaves out its
    training and runtime fields; a file saved before a field was added lacks that one too)."""
    saved = read_saved_settings(file)
    for kind in KINDS:
        fields = {f.name for f in dataclasses.fields(kind)} - {*kind.unsaved_fields()}
        if fields - {*kind.added_fields} <= set(saved) <= fields:
            try:
                return _build(kind, {**saved, "name_or_path": name_or_path})
            except (OmegaConfBaseException, ValueError) as error:  # a damaged value
                raise ConfigError(f"{file}: {first_line(error)}; restore the file") from None
    raise ConfigError(f"{file}: its fields match no model kind ({', '.join(sorted(saved))})")


def _build(kind: type[TransformerConfig], fields: dict[str, Any]) -> TransformerConfig:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(kind), fields))
