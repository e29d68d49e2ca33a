"""`train`: claim the run directory, check everything, build the model and learner, fit with
hooks, evaluate the trained model on the test split, record it all. One phase per function."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from xpretrieval.commands.evaluate import (
    evaluate_model,
    first_stage,
    measurer,
    metrics_table,
    sharding,
)
from xpretrieval.commands.experiment import ExperimentConfig
from xpretrieval.commands.resume import AUTO, last_checkpoint
from xpretrieval.commands.run_dir import claim_run_dir, record_config, record_environment
from xpretrieval.commands.suite import evaluate_suite
from xpretrieval.commands.validate import validate
from xpretrieval.core import distributed
from xpretrieval.core.device import resolve_device
from xpretrieval.core.errors import ConfigError
from xpretrieval.core.hooks import Hook
from xpretrieval.core.io import atomic_directory
from xpretrieval.data.collection import Collection
from xpretrieval.data.documents import document_texts
from xpretrieval.data.run import Run
from xpretrieval.evaluation.measures import Metrics, check_computable
from xpretrieval.models.base import TrainableModel
from xpretrieval.retrieval.saved import index_provenance
from xpretrieval.training.checkpoint import Checkpointer, checkpoint_name
from xpretrieval.training.learner import Learner
from xpretrieval.training.progress_bar import ProgressBar
from xpretrieval.training.random_state import seed_everything
from xpretrieval.training.trackers import ExperimentTracker
from xpretrieval.training.validation import BestModel, Validator

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Splits:
    """The data of a training run, loaded and checked before anything is written."""

    train: Collection
    test: Collection | None  # None: a suite is evaluated instead
    # None: no validation; by name: the collections of validation.suite
    validation: Collection | dict[str, Collection] | None
    candidates: Run | None  # the test candidates to re-rank (None: search the collection)


def run_train(
    experiment: ExperimentConfig, output_dir: Path, overrides: list[str] | None = None
) -> dict[str, float]:
    """Train the model on the train split, then evaluate it on the test split (or, with
    `suite`, on the suite's collections instead); returns metrics.
    `overrides` (the command line's) are saved with the run for `resume`. Under torchrun every
    process trains; the main one alone writes, validates and evaluates."""
    started = time.perf_counter()
    relaunch = experiment.resume == AUTO  # its folder may hold an earlier launch's start
    experiment = validate(experiment, "train", output_dir)
    world = distributed.world()
    if world.main:
        claim_run_dir(output_dir, "train", resuming=relaunch or experiment.resume is not None)
    device = distributed.local_device(resolve_device(experiment.device))
    splits = load_splits(experiment)
    checkpoint = None if experiment.resume is None else last_checkpoint(Path(experiment.resume))
    # seeded before the build (a new head draws its weights), built before anything is
    # written (a model that cannot load leaves the folder empty)
    seed_everything(experiment.seed)
    model = build_model(experiment, splits, checkpoint, device)
    resolved = None
    if world.main:
        resolved = record_config(output_dir, experiment, overrides)
        logger.info("Train split: %s", splits.train)
        tested = {} if splits.test is None else {"test": splits.test}
        record_environment(output_dir, "train", device, train=splits.train, **tested)
    learner = build_learner(experiment, model, splits, checkpoint, device, output_dir)
    before = None
    if experiment.evaluate_before_training and checkpoint is None and world.main:
        before = evaluate_trained(
            model, experiment, splits, device, output_dir, started, "before_training_"
        )
    if not world.main:
        follow(experiment, model, learner, splits, device, output_dir)
        return {}
    fitted = fit(experiment, model, learner, splits, device, output_dir, resolved)
    if shares_final_encoding(experiment, splits):
        distributed.broadcast_parameters(model)
    after = evaluate_trained(
        model,
        experiment,
        splits,
        device,
        output_dir,
        started,
        world=world,
        measured=fitted.measured,
    )
    # the checkpoint carries the metrics of exactly its weights (what `push` puts on a card)
    shutil.copyfile(output_dir / "metrics.json", fitted.measured / "metrics.json")
    for tracker in fitted.trackers:
        tracker.finish(after.aggregate)
    if splits.test is not None:  # a suite printed its own table
        print(metrics_table(splits.test, {"before": before, "after": after}))
    print(f"Trained model: {fitted.measured}")
    return after.aggregate


def evaluate_trained(
    model: TrainableModel,
    experiment: ExperimentConfig,
    splits: Splits,
    device: torch.device,
    output_dir: Path,
    started: float,
    prefix: str = "",
    world: distributed.World = distributed.ALONE,
    measured: Path | None = None,
) -> Metrics:
    """The model measured on the test split, or with `suite` on each of its collections
    (into `<prefix>suite/`; the metrics are then the mean over collections)."""
    if splits.test is None:
        measure = measurer(model, experiment, device, measured)
        return evaluate_suite(experiment, measure, output_dir, started, prefix, measured)
    return evaluate_model(
        model,
        splits.test,
        splits.candidates,
        experiment,
        device,
        output_dir,
        started,
        prefix,
        world,
        measured,
    )


def load_splits(experiment: ExperimentConfig) -> Splits:
    """Load the train, test and validation data and check that every measure is computable
    on them: every check that can refuse the run, before anything is written."""
    if experiment.dataset.train is None:
        raise ConfigError(f"dataset.train is not set in dataset {experiment.dataset.name!r}")
    train = experiment.dataset.train.load()
    test, candidates = None, None  # with a suite, dataset.test is not evaluated
    if not experiment.suite.enabled:
        test = experiment.dataset.test.load()
        test.check_measurable()
        candidates = first_stage(experiment, test)  # checked now rather than after training
    train, validation = load_validation(experiment, train)
    measures = {"evaluation.metrics": experiment.evaluation.metrics}
    if validation is not None:
        measures["validation.metric"] = [experiment.validation.metric]
    check_computable(measures, (train if test is None else test).qrels)
    return Splits(train, test, validation, candidates)


def load_validation(
    experiment: ExperimentConfig, train: Collection
) -> tuple[Collection, Collection | dict[str, Collection] | None]:
    """The training split (less the queries held out) and what validation measures: the
    collections of validation.suite, dataset.dev or held-out training queries (None: none)."""
    settings = experiment.validation
    if not settings.enabled:
        return train, None
    if settings.suite.enabled:  # read once, kept for every validation (use a nano cut)
        suite = dict(settings.suite.load_all(experiment.seed))
        for collection in suite.values():
            logger.info("Validating on %s", collection)
            collection.check_measurable()
        return train, suite
    if experiment.dataset.dev is not None:
        validation = experiment.dataset.dev.load()
    else:
        train, validation = train.hold_out(settings.held_out_queries, experiment.seed)
        logger.info("Validating on %s", validation)
    validation.check_measurable()
    return train, validation


def build_model(
    experiment: ExperimentConfig, splits: Splits, checkpoint: Path | None, device: torch.device
) -> TrainableModel:
    """The model to train: from the checkpoint when resuming, else prepared on the training
    documents (e.g. IDF query weights)."""
    model_config = experiment.model
    if checkpoint is not None:
        logger.info("Resuming from %s", checkpoint)
        model_config = replace(model_config, name_or_path=str(checkpoint))
    model = model_config.build().to(device)
    if checkpoint is None:
        model.prepare(splits.train)
    return model


def build_learner(
    experiment: ExperimentConfig,
    model: TrainableModel,
    splits: Splits,
    checkpoint: Path | None,
    device: torch.device,
    output_dir: Path,
) -> Learner:
    """The learner of `model`, restored from the checkpoint when resuming; with a teacher, the
    teacher's run over the training queries is computed first (by the main process)."""
    sampler = experiment.sampler
    if experiment.teacher.enabled:
        teacher_run = None
        if distributed.world().main:  # the others read the run it wrote
            teacher_run = experiment.teacher.write_run(
                splits.train,
                output_dir / "teacher_run.trec",
                experiment.evaluation.batching,
                device,
                experiment.precision,
            )
        sampler = replace(sampler, teacher_run=str(distributed.broadcast(teacher_run)))
    learner = Learner(
        model=model,
        collection=splits.train,
        sampler=sampler,
        batcher=experiment.batcher,
        trainer=experiment.trainer,
        losses=experiment.losses,
        optimizer=experiment.optimizer,
        seed=experiment.seed,
        precision=experiment.precision,
    )
    if checkpoint is not None:
        learner.restore(checkpoint)
    return learner


@dataclass(frozen=True)
class Fitted:
    """What the main process's fit leaves: the checkpoint holding exactly the weights the run
    then measures (the last step's, or the restored best step's), and the trackers to finish."""

    measured: Path
    trackers: list[ExperimentTracker]


def fit(
    experiment: ExperimentConfig,
    model: TrainableModel,
    learner: Learner,
    splits: Splits,
    device: torch.device,
    output_dir: Path,
    resolved: dict | None,
) -> Fitted:
    """Train with the main process's hooks, in the order they run: validation first (a
    checkpoint of a step includes its validation), the loss schedules, progress, trackers,
    checkpoints, the best-model keeper; then restore the best weights if asked, saved as
    `checkpoints/best-step-N` (outside the rotation, so `keep_checkpoints` never deletes it)."""
    trainer = experiment.trainer
    checkpointer = Checkpointer(
        output_dir / "checkpoints",
        every=trainer.checkpoint_every,
        keep=trainer.keep_checkpoints,
        save=learner.save_checkpoint,
        minutes=trainer.checkpoint_minutes,
    )
    trackers = experiment.logger.hooks(output_dir, trainer.log_every, learner.step, resolved)
    hooks: list[Hook] = [*loss_hooks(experiment), ProgressBar(), *trackers, checkpointer]
    best = None
    if splits.validation is not None:
        settings = experiment.validation
        best = BestModel(model, settings.metric, settings.patience)
        hooks.append(best)
        index = replace(experiment.index, save=False, load=None)
        batching = experiment.evaluation.batching
        precision = experiment.precision
        # every hook hears of each validation (best-model keeping, loggers, checkpoints)
        validator = Validator(
            model, settings, splits.validation, index, batching, device, precision, hooks
        )
        hooks.insert(0, validator)
    state = learner.fit(hooks)
    measured = checkpointer.last
    assert measured is not None  # the last step is always checkpointed
    if best is not None and experiment.validation.restore_best and best.weights is not None:
        best.restore()
        if best.best_step != state.step:
            measured = output_dir / "checkpoints" / f"best-{checkpoint_name(best.best_step)}"
            with atomic_directory(measured) as folder:
                model.save(folder)
    kept = [tracker for tracker in trackers if isinstance(tracker, ExperimentTracker)]
    return Fitted(measured, kept)


def follow(
    experiment: ExperimentConfig,
    model: TrainableModel,
    learner: Learner,
    splits: Splits,
    device: torch.device,
    output_dir: Path,
) -> None:
    """A process other than the main one (torchrun): train, then encode its shards of the test
    documents with the main process's final (or best) weights when the final search shards."""
    learner.fit(loss_hooks(experiment))
    if not shares_final_encoding(experiment, splits):
        return
    distributed.broadcast_parameters(model)
    world = distributed.world()
    shards = sharding(experiment.evaluation, device, output_dir / "encoded", world)
    assert shards is not None
    documents = splits.test.searched_documents()  # with passages: their windows
    provenance = index_provenance(model, documents)
    settings = (experiment.evaluation.batching, experiment.precision, provenance)
    shards.encode(model, document_texts(documents), *settings)


def loss_hooks(experiment: ExperimentConfig) -> list[Hook]:
    """The schedules of the loss terms (warm-ups, margins): every process steps them."""
    return [hook for name, loss in experiment.losses.items() for hook in loss.hooks(name)]


def shares_final_encoding(experiment: ExperimentConfig, splits: Splits) -> bool:
    """Under torchrun with evaluation.shard_size, every process encodes its shards of the test
    documents for the final search (rather than re-ranking or opening a saved index)."""
    settings = experiment.evaluation
    return (
        distributed.world().parallel
        and splits.test is not None
        and settings.shard_size is not None
        and splits.candidates is None
        and experiment.index.load is None
    )
