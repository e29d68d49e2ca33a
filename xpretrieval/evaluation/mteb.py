"""MTEB (the `mteb` package, 2.x) evaluates any model `xpretrieval.load` gives.

`mteb_model` wraps a loaded model in mteb's interfaces: a bi-encoder (dense, SPLADE,
SparseEmbed, ColBERT) becomes an encoder (`encode`, `similarity`), a cross-encoder a
re-ranker (`predict`). Texts go through the model's own encoding (its tokenisation, batching
by length, precision) and are scored by its own `score`, so that mteb ranks as
`xpretrieval.search` does.

Prompts: mteb's `prompt_type` picks the query or document side. The prompt that side reads is
the one mteb resolves from `prompts` (keys as mteb's `model_prompts`: a task name, a task type,
`query` / `document`, or `<task or type>-query` / `-document`), which start from the model's
own `query_prompt` and `document_prompt`; with `instruction_template`, the task's instruction
(its metadata's `prompt`, formatted by the template) is the query prompt instead (and the
prompt of symmetric tasks, which have no `prompt_type`: STS, clustering). A resolved
prompt *replaces* the model's configured prompt on that side, as sentence-transformers'
`encode(prompt=...)` does. Per-query instructions (mteb's instruction-retrieval tasks) are part
of each query's text already and reach the model unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse
import torch
from torch import Tensor

from xpretrieval.core.device import Precision, autocast
from xpretrieval.core.errors import ConfigError
from xpretrieval.models.base import (
    BiEncoder,
    DenseBiEncoder,
    MultiVectorBiEncoder,
    PairScorer,
    RetrievalModel,
    SparseBiEncoder,
    TermWeighted,
)
from xpretrieval.models.encoding import Batching, encode_texts
from xpretrieval.models.loading import load
from xpretrieval.models.quantization import Quantization, trained_quantization
from xpretrieval.models.transformer import TransformerModel

try:
    from mteb.models.abs_encoder import AbsEncoder, get_prompt
    from mteb.models.model_meta import ModelMeta, ScoringFunction
    from mteb.types import PromptType
except ImportError as error:  # an optional dependency: say how to get it
    raise ImportError(
        f"xpretrieval's MTEB adapter needs mteb 2.x ({error}); pip install 'xpretrieval[mteb]'"
    ) from error

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata
    from torch.utils.data import DataLoader

Embeddings = Tensor | scipy.sparse.csr_matrix  # what `encode` returns: CSR rows for SPLADE
# pairs scored at once by `similarity_pairwise` (all pairs of a block, its diagonal kept)
PAIRWISE_BLOCK = 256


class MTEBEncoder(AbsEncoder):
    """A bi-encoder in mteb's encoder interface (`mteb.EncoderProtocol`).

    `encode` returns float32 tensors on the CPU: `[n, dim]` (dense), `[n, vocabulary]` term
    weights (SPLADE; SciPy CSR rows on retrieval tasks, whose corpus would not fit dense), or
    the model's packed representations (ColBERT's token vectors, SparseEmbed's terms), which
    only its `score` reads: such models run retrieval and reranking tasks only. `similarity`
    is the model's `score`: a dot product (a cosine for normalised dense models), MaxSim, ...
    """

    def __init__(
        self,
        model: BiEncoder,
        name: str | None = None,
        prompts: Mapping[str, str] | None = None,
        instruction_template: str | None = None,
        precision: Precision = Precision.auto,
        max_batch_tokens: int | None = None,
    ) -> None:
        if not isinstance(model, BiEncoder):
            raise TypeError(f"MTEBEncoder wraps a bi-encoder, got {type(model).__name__}")
        trained = trained_quantization(getattr(model, "config", None))
        if trained is not Quantization.none:  # mteb would score float vectors it never searches
            raise ConfigError(
                f"model.quantization={trained.value}: this model was trained for {trained.value} "
                "search, which mteb's float scoring does not reproduce; evaluate it with "
                "`python -m xpretrieval evaluate index=quantized`"
            )
        if instruction_template is not None and "{instruction}" not in instruction_template:
            raise ConfigError(
                f"instruction_template={instruction_template!r} must contain '{{instruction}}', "
                "e.g. 'Instruct: {instruction}\\nQuery: '"
            )
        self.model = model
        self.model_prompts = {**_own_prompts(model), **_checked_prompts(prompts)}
        self.instruction_template = instruction_template
        self.precision = Precision(precision)
        self.max_batch_tokens = max_batch_tokens
        Batching(max_tokens=max_batch_tokens)  # refuses a budget below 1 now, not mid-task
        self.mteb_model_meta = _model_meta(
            model, name, _model_type(model), _scoring(model), instruction_template is not None
        )

    def encode(
        self,
        inputs: DataLoader[Any],
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> Embeddings:
        """The representations of the texts of `inputs`, in their order: queries with the query
        side (`prompt_type` query), anything else with the document side, which reads whole
        texts (symmetric tasks, STS or clustering, have no `prompt_type`)."""
        _check_output_precision(kwargs.get("precision"))
        retrieval = task_metadata.simplified_task_type == "retrieval"
        if not retrieval and not isinstance(self.model, DenseBiEncoder | SparseBiEncoder):
            raise ConfigError(
                f"{type(self.model).__name__} represents a text by more than one vector; mteb "
                f"evaluates it on retrieval and reranking tasks only, not {task_metadata.name} "
                f"({task_metadata.type})"
            )
        is_query = prompt_type is PromptType.query
        side = with_prompt(self.model, is_query, self.prompt(task_metadata, prompt_type))
        texts = _texts(inputs)
        if not texts:  # no rows, shaped as this model's
            return (side.encode_queries if is_query else side.encode_documents)([]).cpu()
        # SPLADE's rows as CSR (as mteb's SparseEncoder gives them), except where mteb indexes
        # the corpus' rows itself (reranking tasks), which needs a dense array
        reranking = "Reranking" in task_metadata.type
        sparse = isinstance(self.model, SparseBiEncoder) and retrieval and not reranking
        batching = Batching(kwargs.get("batch_size", 32), self.max_batch_tokens)
        what = "queries" if is_query else "documents"
        reps = encode_texts(
            side.text_encoder(is_query),
            texts,
            batching,
            side.device,
            self.precision,
            f"mteb: encode {what}",
            sparse=sparse,
        )
        return reps if sparse else reps.cpu()

    def prompt(self, task_metadata: TaskMetadata, prompt_type: PromptType | None) -> str:
        """What the side of `prompt_type` reads in front of each text for this task: with
        `instruction_template`, the task's instruction (for queries, and the texts of symmetric
        tasks), else the prompt mteb resolves from `prompts` (none found: no prompt)."""
        if self.instruction_template is not None and prompt_type is not PromptType.document:
            instruction = self.get_task_instruction(task_metadata, prompt_type)
            if instruction:
                return instruction
        return get_prompt(self.model_prompts, task_metadata, prompt_type) or ""

    def similarity(self, embeddings1: Any, embeddings2: Any) -> Tensor:
        """The model's scores of every row of `embeddings1` (queries) against every row of
        `embeddings2` (documents), `[n1, n2]` on the CPU."""
        if scipy.sparse.issparse(embeddings1) or scipy.sparse.issparse(embeddings2):
            # SPLADE scores by dot product: on CSR rows, as its inverted index does
            scores = _csr(embeddings1) @ _csr(embeddings2).T
            return torch.from_numpy(np.asarray(scores.todense(), dtype=np.float32))
        return self.model.similarity(self._rows(embeddings1), self._rows(embeddings2)).cpu()

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> Tensor:
        """The model's score of each row of `embeddings1` with the same row of `embeddings2`,
        `[n]` on the CPU (the diagonal of `similarity`, a block of rows at a time)."""
        if scipy.sparse.issparse(embeddings1) or scipy.sparse.issparse(embeddings2):
            products = _csr(embeddings1).multiply(_csr(embeddings2)).sum(axis=1)
            return torch.from_numpy(np.asarray(products, dtype=np.float32).ravel())
        first, second = self._rows(embeddings1), self._rows(embeddings2)
        if len(first) != len(second):
            raise ValueError(f"similarity_pairwise: {len(first)} rows against {len(second)}")
        blocks = [
            self.similarity(first[i : i + PAIRWISE_BLOCK], second[i : i + PAIRWISE_BLOCK])
            for i in range(0, len(first), PAIRWISE_BLOCK)
        ]
        return torch.cat([block.diagonal() for block in blocks]) if blocks else torch.zeros(0)

    def _rows(self, embeddings: Any) -> Tensor:
        """Representations as a float32 tensor of rows (one vector `[dim]`: one row)."""
        rows = torch.as_tensor(
            np.asarray(embeddings) if isinstance(embeddings, list) else embeddings
        )
        one_vector = isinstance(self.model, DenseBiEncoder | SparseBiEncoder) and rows.ndim == 1
        return (rows.unsqueeze(0) if one_vector else rows).float()


class MTEBCrossEncoder:
    """A cross-encoder in mteb's cross-encoder interface (`mteb.CrossEncoderProtocol`): it
    re-ranks the candidates of reranking tasks (retrieval tasks that give `top_ranked`)."""

    def __init__(
        self, model: PairScorer, name: str | None = None, precision: Precision = Precision.auto
    ) -> None:
        if not isinstance(model, PairScorer):
            raise TypeError(f"MTEBCrossEncoder wraps a pair scorer, got {type(model).__name__}")
        self.model = model
        self.precision = Precision(precision)
        self.mteb_model_meta = _model_meta(model, name, "cross-encoder", None, False)

    def predict(
        self,
        inputs1: DataLoader[Any],
        inputs2: DataLoader[Any],
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """The model's score of each query of `inputs1` with the document in the same row of
        `inputs2` (`score_texts`, with the model's own prompts), `batch_size` pairs at a time."""
        _check_output_precision(kwargs.get("precision"))
        queries, documents = _texts(inputs1), _texts(inputs2)
        if len(queries) != len(documents):
            raise ValueError(f"predict: {len(queries)} queries for {len(documents)} documents")
        batch_size = kwargs.get("batch_size", 32)
        device = self.model.device
        scores: list[float] = []
        with torch.inference_mode(), autocast(device, self.precision):
            for start in range(0, len(queries), batch_size):
                rows = slice(start, start + batch_size)
                pairs = torch.eye(len(queries[rows]), dtype=torch.bool)  # each with its own
                scored = self.model.score_texts(queries[rows], documents[rows], pairs)
                scores += scored.diagonal().float().tolist()
        return np.asarray(scores, dtype=np.float32)


def mteb_model(
    model: str | Path | RetrievalModel,
    *,
    name: str | None = None,
    prompts: Mapping[str, str] | None = None,
    instruction_template: str | None = None,
    device: str | None = None,
    precision: Precision = Precision.auto,
    max_batch_tokens: int | None = None,
) -> MTEBEncoder | MTEBCrossEncoder:
    """`model` (a loaded model, or a folder or hub id that `xpretrieval.load` reads) as mteb
    evaluates it: `mteb.evaluate(mteb_model("<model>"), mteb.get_tasks(["SciFact"]))`.

    `name`: the model's name in mteb's results, `organization/model` (default: the hub id, or
    `local/<folder>`); `prompts`, `instruction_template`: what each side reads in front of its
    texts (the module's docstring; bi-encoders only); `device`: where the model runs (default:
    the best available, or a loaded model's own); `max_batch_tokens`: the padded tokens of a
    batch at most (bi-encoders; mteb's `encode_kwargs` give the batch size).
    """
    if isinstance(model, str | Path):
        model = load(model, device)
    elif device is not None:
        model = model.to(device)
    if isinstance(model, PairScorer):
        if prompts is not None or instruction_template is not None or max_batch_tokens:
            raise ConfigError(
                "mteb_model: a cross-encoder reads its own query_prompt and document_prompt; "
                "prompts, instruction_template and max_batch_tokens are for bi-encoders"
            )
        return MTEBCrossEncoder(model, name, precision)
    if isinstance(model, BiEncoder):
        return MTEBEncoder(model, name, prompts, instruction_template, precision, max_batch_tokens)
    raise ConfigError(
        f"mteb_model: {type(model).__name__} ranks a collection itself; mteb evaluates "
        "bi-encoders and cross-encoders (what xpretrieval.load gives)"
    )


def with_prompt(model: BiEncoder, is_query: bool, prompt: str) -> BiEncoder:
    """`model` reading `prompt` in front of its query (or document) texts instead of its
    configured prompt: itself when they agree, else a shallow copy sharing its weights."""
    field = "query_prompt" if is_query else "document_prompt"
    if not isinstance(model, TransformerModel):
        if prompt:
            raise ConfigError(f"{type(model).__name__} has no prompts; mteb asked for {prompt!r}")
        return model
    if getattr(model.config, field) == prompt:
        return model
    prompted = copy.copy(model)  # the same modules and tokenizer; its own config
    prompted.config = replace(model.config, **{field: prompt})
    return prompted


def _texts(inputs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The texts of mteb's batches, in order (a document's title is already in its text)."""
    texts: list[str] = []
    for batch in inputs:
        if "text" not in batch:
            raise ConfigError(
                f"mteb gave inputs without text ({', '.join(batch)}): not a text task"
            )
        texts += list(batch["text"])
    return texts


def _own_prompts(model: RetrievalModel) -> dict[str, str]:
    """The model's configured prompts, by mteb's prompt types (those it sets)."""
    if not isinstance(model, TransformerModel):
        return {}
    own = {
        PromptType.query.value: model.config.query_prompt,
        PromptType.document.value: model.config.document_prompt,
    }
    return {key: prompt for key, prompt in own.items() if prompt}


def _checked_prompts(prompts: Mapping[str, str] | None) -> dict[str, str]:
    if prompts is None:
        return {}
    wrong = sorted(str(key) for key, prompt in prompts.items() if not isinstance(prompt, str))
    if wrong:
        raise ConfigError(f"prompts: the prompts of {', '.join(wrong)} are not strings")
    return dict(prompts)


def _check_output_precision(precision: str | None) -> None:
    """mteb's `precision` asks for quantised embeddings, which xpretrieval's models do not
    give; its numeric precision is `mteb_model(precision=...)`."""
    if precision not in (None, "float32"):
        raise ConfigError(
            f"encode_kwargs precision={precision!r}: xpretrieval models give float32 "
            "representations only (their compute precision is mteb_model(precision=...))"
        )


def _csr(embeddings: Any) -> scipy.sparse.csr_matrix:
    return scipy.sparse.csr_matrix(
        np.asarray(embeddings) if isinstance(embeddings, list) else embeddings
    )


def _model_type(model: BiEncoder) -> str:
    if isinstance(model, MultiVectorBiEncoder):
        return "late-interaction"
    return "sparse" if isinstance(model, TermWeighted) else "dense"


def _scoring(model: BiEncoder) -> ScoringFunction:
    """How the model scores, as mteb names it (informative: `similarity` is its `score`)."""
    if isinstance(model, MultiVectorBiEncoder):
        return ScoringFunction.MAX_SIM
    if not isinstance(model, DenseBiEncoder | SparseBiEncoder):
        return ScoringFunction.CUSTOM
    cosine = isinstance(model, TransformerModel) and model.config.cosine_scores
    return ScoringFunction.COSINE if cosine else ScoringFunction.DOT_PRODUCT


def _model_meta(
    model: BiEncoder | PairScorer,
    name: str | None,
    model_type: str,
    scoring: ScoringFunction | None,
    instructions: bool,
) -> ModelMeta:
    """mteb's description of the model: its name in results, kind, size and length."""
    if name is not None and "/" not in name:
        raise ConfigError(f"name={name!r}: mteb names models organization/model, e.g. me/{name}")
    fields: dict[str, Any] = {"name": name or f"xpretrieval/{type(model).__name__}"}
    if isinstance(model, TransformerModel):
        # a bi-encoder reads a document at most; a cross-encoder a query and a document
        pair = model.max_query_length if isinstance(model, PairScorer) else 0
        fields["name"] = name or _default_name(model.config.name_or_path)
        fields["n_parameters"] = sum(parameter.numel() for parameter in model.parameters())
        fields["max_tokens"] = pair + model.max_document_length
    fields.update(
        framework=["PyTorch"],
        similarity_fn_name=scoring,
        use_instructions=instructions,
        model_type=[model_type],
    )
    return ModelMeta.create_empty(fields)


def _default_name(name_or_path: str) -> str:
    """A hub id as it is (`organization/model`), a local folder as `local/<folder>`."""
    if Path(name_or_path).is_dir():
        return f"local/{Path(name_or_path).resolve().name}"
    return name_or_path if "/" in name_or_path else f"hub/{name_or_path}"
