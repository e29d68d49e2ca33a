"""What every model on a Hugging Face transformer shares: loading (with config overrides),
shared or separate query/document encoders, saving with the config that rebuilds it; and,
for bi-encoders, tokenising and running each side."""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import BaseModelOutput

from xpretrieval.core.checks import check_range
from xpretrieval.core.errors import ConfigError
from xpretrieval.models.attention import save_attention_memory
from xpretrieval.models.backend_export import Backend, BackendQuantization
from xpretrieval.models.backends import BackendSide, check_backend_fields
from xpretrieval.models.base import BiEncoder, ModelConfig
from xpretrieval.models.compiled import CompiledModules
from xpretrieval.models.dropout import use_fast_dropout
from xpretrieval.models.encoding import TextEncoder
from xpretrieval.models.lora import ADAPTER_FILE, is_adapter, load_adapter, merged, with_lora
from xpretrieval.models.packing import last_hidden_state
from xpretrieval.models.sentence_transformers_layout import MODULES_FILE, model_layout

logger = logging.getLogger(__name__)

# fields every transformer model must be loaded with as it was saved (besides each kind's own
# architecture fields): what its texts look like and whether its weights are adapters
CHECKED_ON_LOAD = ("query_prompt", "document_prompt", "append_eos", "padding_side", "lora_rank")
COMPONENT_FILE = "xpretrieval_model.yaml"
LAYOUT_ONLY = ("kind", "encoders", "heads")  # what `read_layout` says beyond config fields
"""Written beside the Hugging Face files of a saved model: the config that rebuilds it."""
# the component file's first line: how many settings it holds, so a truncated file is told
# from a complete one (files saved before it have none and are read as they are)
COMPONENT_HEADER = "# xpretrieval {kind} model, {count} settings\n"
HEADER_PATTERN = re.compile(r"# xpretrieval \w+ model, (\d+) settings\n")
SAVED_OR = "saved_or"  # the metadata key of `saved_or` fields: their default when none is saved


def saved_or(default: Any) -> Any:
    """A field that, left null, is what the loaded checkpoint was saved with, else `default`:
    a checkpoint's saved settings are the defaults, and only a value given explicitly that
    the checkpoint contradicts is refused."""
    return field(default=None, metadata={SAVED_OR: default})


@dataclass
class TransformerConfig(ModelConfig):
    """Fields of every model built on a Hugging Face transformer checkpoint."""

    # fields a saved model must be loaded with; subclasses list their own
    architecture_fields: ClassVar[tuple[str, ...]] = ("shared",)
    # how training computes, not what the model does: left out of the saved settings
    training_fields: ClassVar[tuple[str, ...]] = ("gradient_checkpointing",)
    # how this run encodes for search: left out of the saved settings, kept in an index's
    # provenance (an int8 graph's vectors differ from PyTorch's)
    runtime_fields: ClassVar[tuple[str, ...]] = (
        "backend",
        "backend_quantization",
        "backend_calibration_texts",
        "compile",
    )
    # the sentence-transformers model kind read from and saved in its layout, if any
    layout_kind: ClassVar[str | None] = None

    name_or_path: str = MISSING  # hub id or local folder (a saved xpretrieval model too)
    shared: bool = True  # one encoder for queries and documents, or two separate ones
    query_max_length: int = 64  # longer queries are truncated to this many tokens
    doc_max_length: int = 256  # longer documents are truncated to this many tokens
    # Hugging Face config fields to change, e.g. {attention_probs_dropout_prob: 0.0}: without
    # attention dropout, PyTorch's fused attention kernels apply (4x faster training on CPU)
    config_overrides: dict[str, Any] = field(default_factory=dict)
    # prepended to every query / document text (E5's "query: " and "passage: ", an
    # instruction), in training, validation, evaluation and export alike; saved with the model
    # (and as sentence-transformers' "query" / "document" prompts); count toward the lengths
    query_prompt: str = ""
    document_prompt: str = ""
    # decoder-only (LLM) backbones, as tevatron trains them: the tokenizer's end-of-sequence
    # token closes every text (model.pooling=last reads it) and batches are padded on the left
    append_eos: bool = False
    padding_side: str = "right"  # or left
    # LoRA adapters (peft) instead of full fine-tuning, when lora_rank > 0
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = None  # null: peft's default modules for the model
    # in training, keep only each layer's input and recompute the layer in backward (Hugging
    # Face activation checkpointing, non-reentrant): far less activation memory for about one
    # more forward pass; the same gradients. A training setting, not saved with the model
    gradient_checkpointing: bool = False
    # what encodes texts for search (evaluate, indexes, mteb): PyTorch, or the model exported
    # to ONNX (run by ONNX Runtime) or OpenVINO on first use and kept beside the checkpoint
    # (exports/), or in ~/.cache/xpretrieval for a Hub model; bi-encoders only, not training
    backend: Backend = Backend.torch
    # int8 for the exported graph: none, dynamic (int8 weights) or static (activations too,
    # calibrated on backend_calibration_texts texts spread over those encoded)
    backend_quantization: BackendQuantization = BackendQuantization.none
    backend_calibration_texts: int = 256
    # encode for search through torch.compile (inductor, dynamic shapes, weights frozen into
    # the code), fusing what PyTorch runs op by op: all-MiniLM-L6-v2 in bf16 on an AMX CPU
    # 1.5x faster after about 40 s of compiling, so worth it from some 15k documents; training
    # is never compiled. Bi-encoders (with backend=torch) and cross-encoders; the CPU needs a
    # C++ compiler
    compile: bool = False

    def __post_init__(self) -> None:
        for name in ("query_max_length", "doc_max_length"):
            check_range(name, getattr(self, name), above=0)
        self.backend = Backend(self.backend)  # built in Python, "onnx" means Backend.onnx
        self.backend_quantization = BackendQuantization(self.backend_quantization)
        check_backend_fields(self)
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be left or right, got {self.padding_side!r}")
        check_range("lora_rank", self.lora_rank, at_least=0)  # 0: no LoRA
        _check_local_path(self.name_or_path)

    def as_saved(self) -> TransformerConfig:
        """This config with the settings it leaves null (`saved_or`) as the checkpoint at
        `name_or_path` was saved (or their defaults); one given that the checkpoint
        contradicts is refused. Reads the saved settings files, no weights."""
        return _as_saved(self, model_layout(self.name_or_path))[0]

    def build(self) -> TransformerModel:
        """Load the model named by `name_or_path` as this config's `model_class`."""
        model_class = self.model_class
        assert issubclass(model_class, TransformerModel)
        return model_class.from_config(self)


def can_only_be_a_path(name: str) -> bool:
    """Whether `name` can only name a local folder (absolute, ./ ../ ~, or more than one
    slash): a hub id is `name` or `owner/name`."""
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1


def _check_local_path(name_or_path: str) -> None:
    """A value that can only be a local path (absolute, ./ ../ ~, or more than one slash: a
    hub id is `name` or `owner/name`) must name an existing folder; otherwise the hub would
    answer with a message about repository ids."""
    if name_or_path == MISSING:
        return
    path = Path(name_or_path)
    if path.is_file():
        raise ValueError(
            f"name_or_path={name_or_path!r} is a file; expected a model folder (with "
            "config.json) or a Hugging Face hub id such as sentence-transformers/all-MiniLM-L6-v2"
        )
    if can_only_be_a_path(name_or_path) and not path.exists():
        raise ValueError(
            f"name_or_path={name_or_path!r}: no such folder; expected a local model folder or "
            "a Hugging Face hub id such as sentence-transformers/all-MiniLM-L6-v2"
        )


class TransformerModel(nn.Module):
    """A model on Hugging Face transformer(s): loading by name or path, saving, the device."""

    auto_class: ClassVar[type] = AutoModel  # the Hugging Face class that loads the encoder
    encoder_kwargs: ClassVar[dict[str, Any]] = {}  # extra arguments of the encoder's forward
    # modules of the model beyond the Hugging Face encoder(s) (e.g. a projection), by
    # attribute: saved as `<attribute>.safetensors` beside the Hugging Face files
    head_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        config: TransformerConfig,
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
        tokenizer.padding_side = config.padding_side
        if tokenizer.pad_token is None:  # decoder-only tokenizers often have none
            tokenizer.pad_token = tokenizer.eos_token
        if config.append_eos and tokenizer.eos_token_id is None:
            raise ConfigError(f"model.append_eos: {config.name_or_path}'s tokenizer has no EOS")
        _check_vocabulary(tokenizer, query_encoder, config.name_or_path)
        self.eval()  # ready to encode, as Hugging Face models load; the learner calls train()

    @classmethod
    def from_config(cls, config: TransformerConfig) -> TransformerModel:
        """Load tokenizer and encoder(s) named by `config.name_or_path`."""
        path = config.name_or_path
        logger.info("Loading %s model %s", type(config).__name__, path)
        folder = Path(path)
        model_files = ("config.json", COMPONENT_FILE, MODULES_FILE, ADAPTER_FILE)
        if folder.is_dir() and not any((folder / name).is_file() for name in model_files):
            raise ConfigError(
                f"model.name_or_path={path!r} is a folder without config.json: "
                "not a Hugging Face model (nor a saved xpretrieval model)"
            )
        layout = model_layout(path)  # read once: the saved settings and the encoders' folders
        config, saved = _as_saved(config, layout)
        sources = _encoder_folders(path, saved, layout)
        try:
            tokenizer = AutoTokenizer.from_pretrained(sources[0])
            _check_tokenizer_files(sources[0], tokenizer, path)  # before any weights load
            if len(sources) == 2:
                query_encoder = cls.load_encoder(sources[0], config)
                document_encoder = cls.load_encoder(sources[1], config)
            else:
                query_encoder = cls.load_encoder(sources[0], config)
                document_encoder = None if config.shared else copy.deepcopy(query_encoder)
        except ConfigError:  # ours: already says which setting or file to fix
            raise
        except (OSError, ValueError) as error:  # transformers raises either for a non-model
            raise ConfigError(
                f"model.name_or_path={path!r} is not a loadable Hugging Face model: {error}"
            ) from error
        model = cls(config, tokenizer, query_encoder, document_encoder)
        heads = {} if layout is None else layout.get("heads", {})
        for name in cls.head_modules:  # a saved model's own weights replace the new ones
            saved = folder / f"{name}.safetensors"
            if not saved.is_file() and name in heads:  # saved by sentence-transformers
                saved = folder / heads[name]
            if saved.is_file():
                getattr(model, name).load_state_dict(load_file(saved))
        return model

    @classmethod
    def load_encoder(cls, path: str | Path, config: TransformerConfig) -> PreTrainedModel:
        """The encoder at `path`: saved LoRA adapters on their base model, or the checkpoint
        (with new adapters when `config.lora_rank` > 0); its layers checkpointed in training
        when `config.gradient_checkpointing`."""
        if is_adapter(path):
            model = load_adapter(path, lambda base: cls.load_base(base, config))
        else:
            model = cls.load_base(path, config)
            if config.lora_rank:
                lora = (config.lora_rank, config.lora_alpha, config.lora_dropout)
                model = with_lora(model, *lora, config.lora_target_modules)
        if config.gradient_checkpointing:
            checkpoint_activations(model, config.name_or_path)
        return model

    @classmethod
    def load_base(cls, path: str | Path, config: TransformerConfig) -> PreTrainedModel:
        """`auto_class.from_pretrained`, with the Hugging Face config fields that
        `config.config_overrides` names replaced, the attention that keeps less for backward
        where the model allows (models/attention.py) and the faster CPU dropout."""
        hf_config = AutoConfig.from_pretrained(path)
        for key, value in config.config_overrides.items():
            if not hasattr(hf_config, key):
                raise ConfigError(
                    f"model.config_overrides.{key}: {type(hf_config).__name__} of {path} has no "
                    f"field {key!r}"
                )
            setattr(hf_config, key, value)
        model = cls.from_pretrained(path, hf_config, config)
        save_attention_memory(model)
        use_fast_dropout(model)
        return model

    @classmethod
    def from_pretrained(
        cls, path: str | Path, hf_config: Any, config: TransformerConfig
    ) -> PreTrainedModel:
        """The encoder's weights; subclasses may check or complete what the checkpoint lacks."""
        return cls.auto_class.from_pretrained(path, config=hf_config)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def prompted(self, texts: Sequence[str], is_query: bool) -> list[str]:
        """`texts` with the configured query or document prompt in front."""
        prompt = self.config.query_prompt if is_query else self.config.document_prompt
        return [prompt + text for text in texts] if prompt else list(texts)

    def prompts(self) -> dict[str, str]:
        """The prompts by sentence-transformers' names, for its layout."""
        return {"query": self.config.query_prompt, "document": self.config.document_prompt}

    def save(self, path: str | Path) -> None:
        """Write the Hugging Face files (tokenizer, the encoder or query/ and document/) and
        the config that rebuilds the model."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(path)
        for folder, encoder in self.encoder_folders().items():
            encoder.save_pretrained(path / folder)
            self.tokenizer.save_pretrained(path / folder)  # each complete, as a Router loads it
        for name in self.head_modules:
            save_file(getattr(self, name).state_dict(), path / f"{name}.safetensors")
        component = OmegaConf.to_container(
            OmegaConf.structured(replace(self.config, name_or_path=".")), enum_to_str=True
        )
        for name in self.config.unsaved_fields():  # how it ran, not what it computes
            del component[name]
        header = COMPONENT_HEADER.format(kind=type(self.config).__name__, count=len(component))
        text = header + OmegaConf.to_yaml(component)
        (path / COMPONENT_FILE).write_text(text, encoding="utf-8")
        if self.config.lora_rank:  # adapters alone: sentence-transformers cannot load them
            logger.info(
                "%s: LoRA adapters, no sentence-transformers files (merge_lora first)", path
            )
        else:
            self.save_layout(path)

    def running(self, module: nn.Module) -> Any:
        """`module` as this pass runs it: compiled (`model.compile`, models/compiled.py) when
        encoding or scoring without gradients, else the module itself: a training step, which
        needs gradients, is never compiled."""
        if not self.config.compile or torch.is_grad_enabled() or module.training:
            return module  # GradCache's first pass runs without gradients, in training mode
        if "_compiled_modules" not in self.__dict__:  # made once, not at every pass
            self._compiled_modules = CompiledModules()
        return self._compiled_modules(module)

    def __getstate__(self) -> dict[str, Any]:
        """Compiled code stays in its process: a worker that unpickles the model compiles its
        own."""
        state = super().__getstate__()
        state.pop("_compiled_modules", None)
        return state

    def merge_lora(self) -> None:
        """Fold LoRA adapters into the encoders' weights: `save` then writes a plain checkpoint
        (loadable anywhere, sentence-transformers included) that scores as the adapted model."""
        self.query_encoder = merged(self.query_encoder)
        if self.document_encoder is not None:
            self.document_encoder = merged(self.document_encoder)
        self.config = replace(self.config, lora_rank=0)

    def save_layout(self, path: Path) -> None:
        """Write the files another library needs to load the saved model (none by default;
        models with a sentence-transformers counterpart write its layout)."""
        del path

    def encoder_folders(self) -> dict[str, PreTrainedModel]:
        """Where `save` writes each Hugging Face encoder: the folder itself for a shared one,
        `query/` and `document/` for separate ones."""
        if self.document_encoder is None:
            return {"": self.query_encoder}
        return {"query": self.query_encoder, "document": self.document_encoder}

    def layout_lengths(self) -> dict[str, int]:
        """Maximum lengths by encoder folder, for the sentence-transformers layout: the
        document length for a shared encoder, each side's own for separate ones."""
        if self.document_encoder is None:
            return {"": self.max_document_length}
        return {"query": self.max_query_length, "document": self.max_document_length}

    def prepare(self, collection: Any) -> None:
        """Set what a fresh model learns from its training collection before the first step
        (nothing by default; inference-free SPLADE's IDF query weights)."""
        del collection


@dataclass(frozen=True, slots=True)
class TokenizedText:
    """One text's token ids, unpadded, and which of them the tokenizer added (CLS, SEP, EOS)."""

    ids: list[int]
    special: list[int]

    def __len__(self) -> int:
        return len(self.ids)


class TransformerBiEncoder(TransformerModel, BiEncoder):
    """Tokenises texts and runs the query or document encoder; subclasses turn the encoder's
    output into representations (`represent`) and score them (`score`)."""

    def text_encoder(self, is_query: bool) -> TextEncoder:
        """The side as encoding runs it: PyTorch, or the graph exported for `model.backend`
        (one per side and model, exported or loaded on first use)."""
        if self.config.backend is Backend.torch or not self.exports_side(is_query):
            return super().text_encoder(is_query)
        sides = self.__dict__.setdefault("_backend_sides", {})
        side = sides.setdefault(is_query, BackendSide(self, is_query))
        return TextEncoder(partial(self.tokenize, is_query=is_query), side.forward, side.prepare)

    def exports_side(self, is_query: bool) -> bool:
        """Whether `model.backend` runs this side from an exported graph (both, unless a
        model's side has no transformer to export)."""
        return True

    def side_encoder(self, is_query: bool) -> PreTrainedModel:
        """The Hugging Face encoder of queries or documents."""
        if is_query or self.document_encoder is None:
            return self.query_encoder
        return self.document_encoder

    def max_length(self, is_query: bool) -> int:
        """The most tokens a query or document keeps (longer ones are truncated)."""
        return self.max_query_length if is_query else self.max_document_length

    def tokenize(self, texts: Sequence[str], is_query: bool) -> list[TokenizedText]:
        """The prompted texts' tokens, at most the side's maximum length, the EOS token last
        when `append_eos` (truncation keeps room for it)."""
        eos = self.config.append_eos
        encoded = self.tokenizer(
            self.prompted(texts, is_query),
            truncation=True,
            max_length=self.max_length(is_query) - eos,
            return_special_tokens_mask=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        tokenized = [
            TokenizedText(ids, special)
            for ids, special in zip(
                encoded["input_ids"], encoded["special_tokens_mask"], strict=True
            )
        ]
        if eos:
            for text in tokenized:
                text.ids.append(self.tokenizer.eos_token_id)
                text.special.append(1)
        return tokenized

    def forward_tokens(self, tokens: Sequence[TokenizedText], is_query: bool) -> Tensor:
        batch = self.pad(tokens).to(self.device)
        special = batch.pop("special_tokens_mask")
        output = self.run_encoder(self.side_encoder(is_query), batch)
        return self.represent(output, batch["attention_mask"], special, is_query)

    def pad(self, tokens: Sequence[TokenizedText], **padding: Any) -> Any:
        """A padded batch of tensors (ids, attention mask, special-tokens mask); `padding`:
        the tokenizer's `pad` settings (by default, to the longest text)."""
        features = {
            "input_ids": [text.ids for text in tokens],
            "special_tokens_mask": [text.special for text in tokens],
        }
        return self.tokenizer.pad(features, return_tensors="pt", **padding)

    def run_encoder(self, encoder: PreTrainedModel, batch: Any) -> Any:
        """The encoder's output for a tokenised batch, which `represent` reads: for a base
        model's last hidden states, computed from the real tokens alone where the model allows
        (models/packing.py); compiled where `running` says so."""
        if self.auto_class is AutoModel and not self.encoder_kwargs:
            hidden = last_hidden_state(self.running(encoder), batch)
            return BaseModelOutput(last_hidden_state=hidden)
        return self.running(encoder)(**batch, **self.encoder_kwargs)

    @abstractmethod
    def represent(
        self, output: Any, attention_mask: Tensor, special_tokens_mask: Tensor, is_query: bool
    ) -> Tensor:
        """Representations `[batch, ...]` from the encoder's output for a tokenised batch."""

    def vocabulary(self, ids: list[int]) -> list[str]:
        """The tokenizer's tokens of vocabulary ids (term-weighted models decode with it)."""
        return self.tokenizer.convert_ids_to_tokens(ids)


def checkpoint_activations(encoder: PreTrainedModel, name: str) -> None:
    """Switch on the Hugging Face `encoder`'s activation checkpointing (plain or under LoRA
    adapters): in training mode, each layer keeps its input alone and runs again in backward.
    Non-reentrant, so gradients reach the weights (LoRA's too) without inputs that require
    them; the input hook transformers adds for the reentrant kind is removed, as it would make
    the model unpicklable (encoding workers). Refused, naming the setting, for a model class
    that cannot checkpoint its layers."""
    if not encoder.supports_gradient_checkpointing:
        raise ConfigError(
            f"model.gradient_checkpointing: {name} is a {encoder.config.model_type} model, whose "
            "transformers class cannot checkpoint activations; set model.gradient_checkpointing"
            "=false (batcher=micro also trains large batches in less memory)"
        )
    non_reentrant = {"use_reentrant": False}
    enable = getattr(encoder, "activation_checkpointing_enable", None)
    if enable is None:  # transformers before activation_checkpointing_enable: the old name
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=non_reentrant)
    else:
        enable(activation_checkpointing_kwargs=non_reentrant)
    encoder.disable_input_require_grads()


def _saved_config(
    path: str, config_type: type[TransformerConfig], layout: dict[str, Any] | None
) -> TransformerConfig | None:
    """The config saved beside a model: xpretrieval's own file, or what its sentence-transformers
    `layout` says (pooling, normalisation, max length); None for plain Hugging Face models."""
    file = Path(path) / COMPONENT_FILE
    if not file.is_file():
        return _sentence_transformers_config(path, config_type, layout)
    settings = read_saved_settings(file)
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(config_type), settings))
    except ConfigKeyError as error:  # unknown fields: saved by another kind of model
        raise ConfigError(
            f"{file} does not describe a {config_type.__name__} model ({first_line(error)}); "
            "choose the model group it was trained with"
        ) from None
    except (OmegaConfBaseException, ValueError) as error:  # a damaged value: wrong type, range
        raise ConfigError(f"{file}: {first_line(error)}; restore the file") from None


def read_saved_settings(file: Path) -> dict[str, Any]:
    """The settings `save` wrote into `file`, or one line naming it: a damaged file must
    neither fail inside yaml nor load with defaults in place of the lines it lost."""
    try:
        text = file.read_text(encoding="utf-8")
        settings = OmegaConf.to_container(OmegaConf.load(file))
    except (yaml.YAMLError, OmegaConfBaseException, UnicodeDecodeError) as error:
        where = getattr(error, "problem_mark", None)  # yaml's: where the text stopped making sense
        problem = getattr(error, "problem", None) or first_line(error)
        raise ConfigError(
            f"{file} is not valid YAML (truncated or edited?): "
            f"{f'line {where.line + 1}: ' if where else ''}{problem}; "
            "restore the file saved with the model"
        ) from None
    if not isinstance(settings, dict):
        raise ConfigError(f"{file} holds no model settings (truncated or edited?); restore it")
    header = HEADER_PATTERN.match(text)
    if header and (len(settings) != int(header[1]) or not text.endswith("\n")):
        raise ConfigError(
            f"{file} is incomplete ({len(settings)} of the {header[1]} settings it was saved "
            "with, or its last line cut): truncated? restore the file saved with the model"
        )
    return {str(key): value for key, value in settings.items()}


def first_line(error: BaseException) -> str:
    """An error's first line (yaml's and OmegaConf's messages go on with their context)."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _sentence_transformers_config(
    path: str, config_type: type[TransformerConfig], layout: dict[str, Any] | None
) -> TransformerConfig | None:
    """The settings a sentence-transformers model of the same kind was saved with; None for
    another kind, whose transformer is then a base checkpoint (SPLADE from a dense model)."""
    if layout is None or layout["kind"] != config_type.layout_kind:
        return None
    fields = {k: v for k, v in layout.items() if k not in LAYOUT_ONLY}
    merged = OmegaConf.merge(OmegaConf.structured(config_type), {"name_or_path": path, **fields})
    return OmegaConf.to_object(merged)


def _encoder_folders(
    path: str, saved: TransformerConfig | None, layout: dict[str, Any] | None
) -> list[str]:
    """Where the Hugging Face files of the encoder(s) are: the model itself, the transformer
    subfolder(s) its sentence-transformers layout names (`0_Transformer/`, a Router's query
    and document folders), or xpretrieval's `query/` and `document/` of separate encoders."""
    if layout is not None and Path(path).is_dir():  # a hub snapshot: the loaders find it
        return [str(Path(path) / sub) if sub else path for sub in layout["encoders"]]
    if saved is not None and not saved.shared:
        return [str(Path(path) / "query"), str(Path(path) / "document")]
    alone = Path(path) / "document"  # a model without a query transformer saves this side only
    if saved is not None and (alone / "config.json").is_file():
        return [str(alone)]
    return [path]


def _as_saved(
    config: TransformerConfig, layout: dict[str, Any] | None
) -> tuple[TransformerConfig, TransformerConfig | None]:
    """(`config` completed from the checkpoint's saved settings, those settings; None for a
    plain Hugging Face checkpoint), after checking that the config contradicts none of them."""
    saved = _saved_config(config.name_or_path, type(config), layout)
    if saved is not None:
        saved = _completed(saved, None)  # what the layout leaves unsaid: the defaults
        _check_compatible(config, saved, config.name_or_path)
    return _completed(config, saved), saved


def _completed(config: TransformerConfig, saved: TransformerConfig | None) -> TransformerConfig:
    """`config` with each `saved_or` field it leaves null set as `saved` has it, else to the
    field's default."""
    values = {}
    for item in dataclasses.fields(config):
        if SAVED_OR in item.metadata and getattr(config, item.name) is None:
            value = None if saved is None else getattr(saved, item.name)
            values[item.name] = item.metadata[SAVED_OR] if value is None else value
    return replace(config, **values) if values else config


def _check_compatible(config: TransformerConfig, saved: TransformerConfig, path: str) -> None:
    """A saved model must be loaded with the architecture fields it was trained with (those
    the config leaves null take the saved values)."""
    fields = (*config.architecture_fields, *CHECKED_ON_LOAD)
    differ = [
        n
        for n in fields
        if getattr(config, n) is not None and getattr(config, n) != getattr(saved, n)
    ]
    if differ:
        wanted = ", ".join(f"{n}={_show(getattr(saved, n))}" for n in differ)
        given = ", ".join(f"{n}={_show(getattr(config, n))}" for n in differ)
        raise ConfigError(
            f"model {path} was saved with {wanted} but the config asks for {given}; "
            f"set model.{differ[0]}={_show(getattr(saved, differ[0]))} "
            "(or load it with xpretrieval.load, which reads them)"
        )


def _show(value: object) -> str:
    return str(getattr(value, "value", value)).lower()


def _check_tokenizer_files(source: str, tokenizer: PreTrainedTokenizerBase, name: str) -> None:
    """Without its vocabulary files, transformers builds a stand-in tokenizer from the model's
    config that maps nearly every word to [UNK] (and scores silently worse): a local folder
    must hold one of the files the tokenizer reads (a hub id's files are the hub's)."""
    folder = Path(source)
    if not folder.is_dir():
        return
    names = sorted({"tokenizer.json", *getattr(tokenizer, "vocab_files_names", {}).values()})
    if not any((folder / file).is_file() for file in names):
        raise ConfigError(
            f"model.name_or_path={name!r}: {folder} has no tokenizer files (none of "
            f"{', '.join(names)}); copy them (with tokenizer_config.json) from the model it was "
            "trained from, or save it again with its tokenizer"
        )


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
