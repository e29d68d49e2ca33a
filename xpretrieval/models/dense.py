"""Dense bi-encoder over any Hugging Face encoder (`AutoModel`): one pooled vector per text."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import MISSING, OmegaConf
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from xpretrieval.config import register
from xpretrieval.errors import ConfigError
from xpretrieval.models.base import ModelConfig
from xpretrieval.models.pooling import Pooling, pool

logger = logging.getLogger(__name__)

COMPONENT_FILE = "xpretrieval_model.yaml"
"""Written beside the Hugging Face files of a saved model: the config that rebuilds it."""


@register("model", "dense")
@dataclass
class Dense(ModelConfig):
    """Bi-encoder: score(q, d) = <pool(enc(q)), pool(enc(d))>, a cosine when `normalize`."""

    name_or_path: str = (
        MISSING  # Hugging Face hub id or local folder (a saved xpretrieval model too)
    )
    pooling: Pooling = Pooling.mean
    normalize: bool = False  # L2-normalise vectors, making the dot-product score a cosine
    shared: bool = True  # one encoder for queries and documents, or two separate ones
    query_max_length: int = 64  # longer queries are truncated to this many tokens
    doc_max_length: int = 256  # longer documents are truncated to this many tokens
    # Hugging Face config fields to change, e.g. {attention_probs_dropout_prob: 0.0}: without
    # attention dropout, PyTorch's fused attention kernels apply (4x faster training on CPU)
    config_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("query_max_length", "doc_max_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    def build(self) -> DenseEncoder:
        return DenseEncoder.from_config(self)


class DenseEncoder(nn.Module):
    """Encodes texts with a Hugging Face encoder and pools them into vectors."""

    def __init__(
        self,
        config: Dense,
        tokenizer: PreTrainedTokenizerBase,
        query_encoder: PreTrainedModel,
        document_encoder: PreTrainedModel | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.query_encoder = query_encoder
        self.document_encoder = document_encoder  # None when shared with the query encoder
        self.max_query_length = config.query_max_length
        self.max_document_length = config.doc_max_length
        _check_vocabulary(tokenizer, query_encoder, config.name_or_path)

    @classmethod
    def from_config(cls, config: Dense) -> DenseEncoder:
        """Load tokenizer and encoder(s) named by `config.name_or_path`."""
        path = config.name_or_path
        logger.info("Loading dense model %s", path)
        folder = Path(path)
        if folder.is_dir() and not any(
            (folder / f).is_file() for f in ("config.json", COMPONENT_FILE)
        ):
            raise ConfigError(
                f"model.name_or_path={path!r} is a folder without config.json: "
                "not a Hugging Face model (nor a saved xpretrieval model)"
            )
        saved = _saved_config(path)
        if saved is not None:
            _check_compatible(config, saved, path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            if saved is not None and not saved.shared:
                query_encoder = _load_encoder(Path(path) / "query", config.config_overrides)
                document_encoder = _load_encoder(Path(path) / "document", config.config_overrides)
            else:
                query_encoder = _load_encoder(path, config.config_overrides)
                document_encoder = None if config.shared else copy.deepcopy(query_encoder)
        except (OSError, ValueError) as error:  # transformers raises either for a non-model
            raise ConfigError(
                f"model.name_or_path={path!r} is not a loadable Hugging Face model: {error}"
            ) from error
        return cls(config, tokenizer, query_encoder, document_encoder)

    @classmethod
    def load(cls, path: str | Path) -> DenseEncoder:
        """Load a model written by `save`, with the config it was saved with."""
        saved = _saved_config(str(path))
        if saved is None:
            raise FileNotFoundError(
                f"{path} has no {COMPONENT_FILE}: not a saved xpretrieval model"
            )
        return cls.from_config(replace(saved, name_or_path=str(path)))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode_queries(self, texts: Sequence[str]) -> Tensor:
        return self._encode(self.query_encoder, texts, self.max_query_length)

    def encode_documents(self, texts: Sequence[str]) -> Tensor:
        encoder = self.document_encoder if self.document_encoder is not None else self.query_encoder
        return self._encode(encoder, texts, self.max_document_length)

    def score(self, queries: Tensor, documents: Tensor) -> Tensor:
        """All-pairs dot products, `[n_queries, n_documents]`."""
        return queries @ documents.T

    def _encode(self, encoder: PreTrainedModel, texts: Sequence[str], max_length: int) -> Tensor:
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(self.device)
        hidden = encoder(**batch).last_hidden_state
        vectors = pool(hidden, batch["attention_mask"], self.config.pooling)
        return F.normalize(vectors, dim=-1) if self.config.normalize else vectors

    def save(self, path: str | Path) -> None:
        """Write the Hugging Face files (tokenizer, the encoder or query/ and document/) and
        the config that rebuilds the model."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(path)
        if self.document_encoder is None:
            self.query_encoder.save_pretrained(path)
        else:
            self.query_encoder.save_pretrained(path / "query")
            self.document_encoder.save_pretrained(path / "document")
        component = OmegaConf.structured(replace(self.config, name_or_path="."))
        (path / COMPONENT_FILE).write_text(OmegaConf.to_yaml(component), encoding="utf-8")


def _load_encoder(path: str | Path, overrides: dict[str, Any]) -> PreTrainedModel:
    """`AutoModel.from_pretrained`, with some fields of its Hugging Face config replaced."""
    hf_config = AutoConfig.from_pretrained(path)
    for key, value in overrides.items():
        if not hasattr(hf_config, key):
            raise ConfigError(
                f"model.config_overrides.{key}: {type(hf_config).__name__} of {path} has no "
                f"field {key!r}"
            )
        setattr(hf_config, key, value)
    return AutoModel.from_pretrained(path, config=hf_config)


def _saved_config(path: str) -> Dense | None:
    """The config saved beside a local model folder, or None for hub ids and plain HF folders."""
    file = Path(path) / COMPONENT_FILE
    if not file.is_file():
        return None
    merged = OmegaConf.merge(OmegaConf.structured(Dense), OmegaConf.load(file))
    return OmegaConf.to_object(merged)


ARCHITECTURE_FIELDS = ("pooling", "normalize", "shared")


def _check_compatible(config: Dense, saved: Dense, path: str) -> None:
    """A saved model must be loaded with the pooling, normalisation and sharing it was
    trained with."""
    names = [f.name for f in fields(Dense) if f.name in ARCHITECTURE_FIELDS]
    differ = [n for n in names if getattr(config, n) != getattr(saved, n)]
    if differ:
        wanted = ", ".join(f"{n}={_show(getattr(saved, n))}" for n in differ)
        given = ", ".join(f"{n}={_show(getattr(config, n))}" for n in differ)
        raise ConfigError(
            f"model {path} was saved with {wanted} but the config asks for {given}; "
            f"set model.{differ[0]}={_show(getattr(saved, differ[0]))} "
            "(or load it with DenseEncoder.load)"
        )


def _show(value: object) -> str:
    return value.value if isinstance(value, Pooling) else str(value).lower()


def _check_vocabulary(
    tokenizer: PreTrainedTokenizerBase, encoder: PreTrainedModel, name: str
) -> None:
    """Token ids beyond the embedding table would crash deep inside the forward pass."""
    rows = encoder.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ConfigError(
            f"{name}: the tokenizer has {len(tokenizer)} tokens but the model's embedding table "
            f"has {rows} rows; tokenizer and model do not belong together"
        )
