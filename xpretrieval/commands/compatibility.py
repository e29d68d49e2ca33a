"""Which components fit together, checked once, before any weights load: a model config names
its model kind (`model_class`, a class of models/base.py), samplers the record type they yield,
trainers the record types they read, losses the model kind and records they need, indexes
the model kind they serve. Nothing here dispatches on a component's name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xpretrieval.core.device import Precision, effective_precision, resolve_device
from xpretrieval.core.errors import ConfigError
from xpretrieval.data.records import WITH_NEGATIVES, DistillationRecord, PointwiseRecord
from xpretrieval.losses.base import Loss
from xpretrieval.models.backend_export import Backend
from xpretrieval.models.base import (
    BiEncoder,
    DenseBiEncoder,
    ModelConfig,
    PairScorer,
    PartedScore,
    Ranker,
    SparseBiEncoder,
    TermWeighted,
    TrainableModel,
)
from xpretrieval.models.loading import config_for
from xpretrieval.models.quantization import Quantization, trained_quantization
from xpretrieval.samplers.pairwise import PairwiseSampler

if TYPE_CHECKING:
    from xpretrieval.commands.experiment import ExperimentConfig
    from xpretrieval.retrieval.index import IndexConfig

# what a component needs, in words, and the models that have it, by model kind
KIND_WORDS: dict[type, tuple[str, str]] = {
    TrainableModel: ("weights to train", "model=dense, splade, colbert or cross_encoder"),
    BiEncoder: ("separate query and document representations", "model=dense or splade"),
    DenseBiEncoder: ("single [n, dim] vectors", "model=dense"),
    TermWeighted: ("vocabulary term weights", "model=splade or model=sparse_embed"),
    SparseBiEncoder: ("representations that are vocabulary term weights", "model=splade"),
}


# what records of a type carry beyond a query and documents, and the sampler that yields them
RECORD_WORDS: dict[type, tuple[str, str]] = {
    DistillationRecord: ("a teacher's scores", "sampler=distillation"),
    PointwiseRecord: ("relevance labels", "sampler=pointwise trainer=pointwise"),
}


def _needs(kind: type) -> tuple[str, str]:
    """(what `kind` provides, the models to choose), for error messages."""
    what, how = KIND_WORDS.get(kind, (f"a {kind.__name__} model", kind.__name__))
    return f"{what} ({kind.__name__})", how


def check_components(experiment: ExperimentConfig, command: str) -> None:
    """Every check that applies to `command` (train, evaluate, mine, export)."""
    check_backend(experiment, command)
    if command == "train":
        check_training(experiment)
    if command == "export":
        check_exportable(experiment.model)
    else:
        check_model_fits_evaluation(experiment)


def check_training(experiment: ExperimentConfig) -> None:
    """A model that has weights, records the trainer reads and that carry what each loss
    term needs, and loss terms that the model can feed."""
    model = experiment.model
    if not model.is_kind(TrainableModel):
        raise ConfigError(
            f"model: a {type(model).__name__} model has nothing to train; run `evaluate` with it"
        )
    if not experiment.losses:
        raise ConfigError("losses is empty: add a term, e.g. +loss@losses.rank=infonce")
    check_sampler_fits_trainer(experiment)
    for name, loss in experiment.losses.items():
        check_loss(name, loss, experiment)
    check_teacher(experiment)
    check_negative_filter(experiment)
    micro_batches = experiment.batcher.micro_batch_size() is not None
    if model.is_kind(PairScorer) and micro_batches:
        raise ConfigError(
            f"batcher: a {type(model).__name__} model has no representations to split by "
            "micro-batches; use batcher=fixed"
        )
    if trained_quantization(model) is Quantization.int8 and micro_batches:
        raise ConfigError(
            "model.quantization=int8 calibrates its ranges on the documents encoded together, "
            "which micro-batches would cut (the loss would change with the micro-batch size); "
            "use batcher=fixed, or model.quantization=binary (no ranges)"
        )


def check_backend(experiment: ExperimentConfig, command: str) -> None:
    """An exported graph only encodes for search, ONNX Runtime's only in fp32 or int8."""
    backend = getattr(experiment.model, "backend", Backend.torch)
    if backend is Backend.torch:
        return
    if command == "train":
        raise ConfigError(
            f"model.backend={backend.value}: training runs on torch (the graph would not "
            "follow the weights); train, then evaluate the checkpoint with model.backend"
        )
    precision = effective_precision(resolve_device(experiment.device), experiment.precision)
    if backend is Backend.onnx and precision is Precision.bf16:
        meaning = " (bf16 on this GPU)" if experiment.precision is Precision.auto else ""
        raise ConfigError(
            f"precision={experiment.precision.value}{meaning}: ONNX Runtime runs the exported "
            "graph in fp32 (or int8); use precision=fp32, or model.backend=openvino for bf16"
        )


def check_sampler_fits_trainer(experiment: ExperimentConfig) -> None:
    record, trainer = experiment.sampler.record, experiment.trainer
    if not issubclass(record, trainer.reads):
        if issubclass(record, PointwiseRecord):
            wanted = "trainer=pointwise"
        else:
            wanted = "sampler=pointwise, or trainer=batchwise"
        raise ConfigError(
            f"sampler: {type(experiment.sampler).__name__} yields {record.__name__}s, which "
            f"{type(trainer).__name__} does not read; use {wanted}"
        )


def check_loss(name: str, loss: Loss, experiment: ExperimentConfig) -> None:
    """One loss term against the model kind and the records it learns from."""
    model, kind = experiment.model, type(experiment.model).__name__
    loss_name = type(loss).__name__
    if not model.is_kind(loss.model_kind):
        what, how = _needs(loss.model_kind)
        raise ConfigError(
            f"losses.{name}: {loss_name} reads {what}, which a {kind} model does not have; "
            f"use {how}, or remove the term (~loss@losses.{name})"
        )
    if loss.needs_cosine_scores and not model.cosine_scores:
        raise ConfigError(
            f"losses.{name}: {loss_name} reads scores as cosines, which a {kind} model's are "
            "not; use model=dense with model.normalize=true"
        )
    if loss.part is not None:
        parts = model.model_class.parts if model.is_kind(PartedScore) else ()
        if loss.part not in parts:
            raise ConfigError(
                f"losses.{name}.part={loss.part}: a {kind} model's score has no such part "
                f"(parts: {', '.join(parts) or 'none'}); set losses.{name}.part=null"
            )
    record, sampler = experiment.sampler.record, type(experiment.sampler).__name__
    if loss.needs_own_negatives() and not issubclass(record, WITH_NEGATIVES):
        raise ConfigError(
            f"losses.{name}: {loss_name} ranks each positive against the record's own "
            f"negatives, which {sampler} records do not have; use in-batch negatives (InfoNCE "
            "with in_batch_negatives=true) or a sampler with negatives (sampler=batchwise)"
        )
    if loss.record_kinds is not None and not issubclass(record, loss.record_kinds):
        what, how = RECORD_WORDS[loss.record_kinds[0]]
        raise ConfigError(
            f"losses.{name}: {loss_name} learns from {what}, which {sampler} records do not "
            f"carry; use {how}"
        )


def check_teacher(experiment: ExperimentConfig) -> None:
    """A distillation sampler gets its teacher's scores from exactly one place: a run file or
    a teacher model scoring in the run; a teacher model needs a sampler that reads them."""
    sampler, teacher = experiment.sampler, experiment.teacher
    if not issubclass(sampler.record, DistillationRecord):
        if teacher.enabled:
            raise ConfigError(
                f"teacher.model: {type(sampler).__name__} records carry no teacher scores; use "
                "sampler=distillation"
            )
        return
    if teacher.enabled and teacher.model is not None and teacher.model.is_kind(Ranker):
        raise ConfigError(
            f"teacher.model: a {type(teacher.model).__name__} model ranks collections but does "
            "not score given candidates; use a cross_encoder or a bi-encoder"
        )
    train = experiment.dataset.train
    if train is not None and train.hf_dataset is not None:  # its examples carry the scores
        if sampler.teacher_run is not None or teacher.enabled:
            raise ConfigError(
                f"sampler.teacher_run: dataset.train.hf_dataset={train.hf_dataset} brings the "
                "teacher's scores with its examples; drop the teacher run file or model"
            )
        return
    if (sampler.teacher_run is None) != teacher.enabled:
        raise ConfigError(
            "sampler.teacher_run: give exactly one of a teacher run file (sampler.teacher_run="
            "run.trec) and a teacher model that scores in the run (+model@teacher.model="
            "cross_encoder teacher.model.name_or_path=<checkpoint>), got teacher_run="
            f"{sampler.teacher_run!r} and {'a' if teacher.enabled else 'no'} teacher model"
        )


def check_negative_filter(experiment: ExperimentConfig) -> None:
    """A hard-negative filter's model scores (query, document) pairs: a cross-encoder, told by
    the settings saved with the checkpoint (no weights load)."""
    sampler = experiment.sampler
    if not isinstance(sampler, PairwiseSampler) or not sampler.hard_negatives.filter.enabled:
        return
    name = sampler.hard_negatives.filter.model
    key = f"sampler.hard_negatives.filter.model={name}"
    try:
        model = config_for(str(name))
    except ConfigError as error:
        raise ConfigError(f"{key}: {error}") from None
    if not model.is_kind(PairScorer):
        raise ConfigError(
            f"{key} holds a {type(model).__name__} model, which does not score given (query, "
            "document) pairs; give a cross-encoder checkpoint (one trained with "
            "model=cross_encoder, or a sentence-transformers CrossEncoder)"
        )


def check_model_fits_evaluation(experiment: ExperimentConfig) -> None:
    """A pair scorer needs a first stage to re-rank; a bi-encoder that searches the collection
    needs an index that serves its kind."""
    model, kind = experiment.model, type(experiment.model).__name__
    rerank = experiment.evaluation.rerank.enabled
    if model.is_kind(PairScorer) and not rerank:
        raise ConfigError(
            f"evaluation.rerank: a {kind} model only re-ranks candidates; set e.g. "
            "evaluation.rerank.top_k=100 (BM25's top 100, or add evaluation.rerank.run_file)"
        )
    if model.is_kind(PairScorer) and experiment.validation.enabled:
        raise ConfigError(
            f"validation.every: validation searches the collection, which a {kind} model "
            "cannot; set validation.every=0"
        )
    if searches_collection(experiment):
        check_index_serves(experiment.index, model.model_class, kind)


def searches_collection(experiment: ExperimentConfig) -> bool:
    """Whether the experiment's index searches a collection: a bi-encoder evaluated without a
    first stage to re-rank, or validated during training."""
    rerank, validation = experiment.evaluation.rerank, experiment.validation
    return experiment.model.is_kind(BiEncoder) and (not rerank.enabled or validation.enabled)


def check_index_serves(index: IndexConfig, model_class: type, name: str) -> None:
    """The index can search what models of `model_class` (called `name`) encode: the CLI's
    configured model, or a model passed to the Python API's `search`."""
    if not issubclass(model_class, index.serves):
        what, how = _needs(index.serves)
        raise ConfigError(
            f"index: {type(index).__name__} indexes {what}, which a {name} "
            f"model does not have; use index=exact, or {how}"
        )


def check_exportable(model: ModelConfig) -> None:
    """Exports write term weights (Anserini) or single vectors (.npy): nothing else."""
    if not model.is_kind((SparseBiEncoder, DenseBiEncoder)):
        raise ConfigError(
            f"model: a {type(model).__name__} model is scored by more than term weights or "
            "single vectors; export takes SPLADE (Anserini files) or dense models (.npy)"
        )
