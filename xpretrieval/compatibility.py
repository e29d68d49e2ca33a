"""Which components fit together: a config combining a loss, model, sampler or trainer with
one that cannot feed it is refused by name before any weights load. Each component declares
what it needs and gives as class variables; nothing here dispatches on a component's name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xpretrieval.errors import ConfigError
from xpretrieval.losses.base import Loss
from xpretrieval.losses.regularizers import Regularizer
from xpretrieval.models.base import ModelConfig

if TYPE_CHECKING:
    from xpretrieval.experiment import ExperimentConfig


def check_components(experiment: ExperimentConfig) -> None:
    """Every check below, on a built (not yet loaded) experiment config."""
    check_losses_fit_model(experiment.losses, experiment.model)
    check_model_fits_evaluation(experiment)
    check_losses_fit_sampler(experiment)
    check_teacher(experiment)


def check_teacher(experiment: ExperimentConfig) -> None:
    """A distillation sampler gets its teacher's scores from exactly one place: a run file or
    a teacher model scoring in the run; a teacher model needs a sampler that reads them."""
    sampler, teacher = experiment.sampler, experiment.teacher.enabled
    if not sampler.gives_teacher_scores:
        if teacher:
            raise ConfigError(
                f"teacher.model: {type(sampler).__name__} records carry no teacher scores; use "
                "sampler=distillation"
            )
        return
    if (sampler.teacher_run is None) != teacher:
        raise ConfigError(
            "sampler.teacher_run: give exactly one of a teacher run file (sampler.teacher_run="
            "run.trec) and a teacher model that scores in the run (+model@teacher.model="
            "cross_encoder teacher.model.name_or_path=<checkpoint>), got teacher_run="
            f"{sampler.teacher_run!r} and {'a' if teacher else 'no'} teacher model"
        )


def check_losses_fit_model(losses: dict[str, Loss], model: ModelConfig) -> None:
    """Refuse, before any weights load, a loss term that needs what the model does not give."""
    kind = type(model).__name__
    for name, loss in losses.items():
        if isinstance(loss, Regularizer) and not model.has_term_weights:
            raise ConfigError(
                f"losses.{name}: {type(loss).__name__} regularises vocabulary term weights, "
                f"which a {kind} model does not have; use model=splade or model=sparse_embed, "
                f"or remove the term (~loss@losses.{name})"
            )
        if loss.needs_dense_vectors and not model.dense_vectors:
            raise ConfigError(
                f"losses.{name}: {type(loss).__name__} reads dense [n, dim] vectors, which a "
                f"{kind} model does not produce; use model=dense"
            )
        if loss.part is not None and loss.part not in model.score_parts:
            parts = ", ".join(model.score_parts) or "none"
            raise ConfigError(
                f"losses.{name}.part={loss.part}: a {kind} model's score has no such part "
                f"(parts: {parts}); set losses.{name}.part=null"
            )


def check_model_fits_evaluation(experiment: ExperimentConfig) -> None:
    """A model that only re-ranks needs a first stage, and whole batches."""
    if not experiment.model.reranks_only:
        return
    kind = type(experiment.model).__name__
    if not experiment.evaluation.rerank.enabled:
        raise ConfigError(
            f"evaluation.rerank: a {kind} model only re-ranks candidates; set e.g. "
            "evaluation.rerank.top_k=100 (BM25's top 100, or add evaluation.rerank.run_file)"
        )
    if experiment.batcher.micro_batch_size() is not None:
        raise ConfigError(f"batcher: a {kind} model has no representations to split by")


def check_losses_fit_sampler(experiment: ExperimentConfig) -> None:
    """Records that the trainer can read, carrying what each loss term needs."""
    sampler = type(experiment.sampler).__name__
    if experiment.sampler.pointwise != experiment.trainer.pointwise:
        wanted = (
            "trainer=pointwise"
            if experiment.sampler.pointwise
            else "sampler=pointwise, or trainer=batchwise"
        )
        raise ConfigError(
            f"sampler: {sampler} and {type(experiment.trainer).__name__} do not fit; use {wanted}"
        )
    for name, loss in experiment.losses.items():
        if loss.needs_labels and not experiment.sampler.gives_labels:
            raise ConfigError(
                f"losses.{name}: {type(loss).__name__} needs relevance labels, which {sampler} "
                "records do not carry; use sampler=pointwise trainer=pointwise"
            )
        if loss.needs_teacher and not experiment.sampler.gives_teacher_scores:
            raise ConfigError(
                f"losses.{name}: {type(loss).__name__} learns from a teacher's scores, which "
                f"{sampler} records do not carry; use sampler=distillation"
            )
        if loss.needs_own_negatives() and not experiment.sampler.has_negatives:
            raise ConfigError(
                f"losses.{name}: {type(loss).__name__} ranks each positive against the "
                f"record's own negatives, which {sampler} records do "
                "not have; use in-batch negatives (InfoNCE with in_batch_negatives=true)"
            )
