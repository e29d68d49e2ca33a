"""The root config of a run and what the commands do with it: train, then evaluate."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from omegaconf import MISSING, DictConfig, OmegaConf

from xpretrieval.commands.compatibility import check_components
from xpretrieval.commands.export import ExportConfig, export_collection
from xpretrieval.commands.resume import AUTO, has_checkpoint, last_checkpoint
from xpretrieval.commands.run_dir import claim_run_dir, write_environment, write_overrides
from xpretrieval.core import distributed
from xpretrieval.core.config import register_root, to_objects
from xpretrieval.core.device import Precision, resolve_device
from xpretrieval.core.distributed import ALONE, World
from xpretrieval.core.errors import ConfigError
from xpretrieval.core.io import write_json, write_text
from xpretrieval.data.collection import Collection
from xpretrieval.data.dataset import DatasetConfig
from xpretrieval.data.run import Run, write_trec_run
from xpretrieval.evaluation.measures import (
    EvaluationConfig,
    Metrics,
    check_computable,
    compute_metrics,
)
from xpretrieval.losses.base import Loss
from xpretrieval.models.base import ModelConfig, RetrievalModel
from xpretrieval.retrieval.index import IndexConfig
from xpretrieval.retrieval.rerank import rerank_candidates
from xpretrieval.retrieval.retrieve import retrieve
from xpretrieval.retrieval.saved import index_provenance
from xpretrieval.retrieval.shards import Sharding
from xpretrieval.samplers.base import Sampler
from xpretrieval.training.batchers import Batcher
from xpretrieval.training.checkpoint import Checkpointer
from xpretrieval.training.learner import Learner
from xpretrieval.training.optim import OptimizerConfig
from xpretrieval.training.progress_bar import ProgressBar
from xpretrieval.training.random_state import seed_everything
from xpretrieval.training.teacher import TeacherConfig
from xpretrieval.training.trackers import ExperimentTracker, LoggerConfig
from xpretrieval.training.trainers import Trainer
from xpretrieval.training.validation import BestModel, ValidationConfig, Validator

logger = logging.getLogger(__name__)


@register_root("experiment_schema")
@dataclass
class ExperimentConfig:
    """Everything one run needs; each field is a component chosen from its conf/ group."""

    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    sampler: Sampler = MISSING
    batcher: Batcher = MISSING
    losses: dict[str, Loss] = field(default_factory=dict)  # named, weighted training terms
    optimizer: OptimizerConfig = MISSING
    trainer: Trainer = MISSING
    index: IndexConfig = MISSING  # how test documents are searched (exact, inverted)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    # a trained model whose scores a distillation sampler learns from, computed at the start
    # of the run; off unless teacher.model is set
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    seed: int = 42
    device: str | None = None  # cpu, cuda, cuda:1, mps; null picks cuda > mps > cpu
    precision: Precision = Precision.auto  # auto: bf16 autocast on a GPU that supports it
    evaluate_before_training: bool = False  # also measure the untrained model, for comparison
    # a run directory to continue from its last checkpoint, exactly as if never interrupted;
    # auto: this run's own directory if it holds a checkpoint (relaunched sweeps, requeued jobs)
    resume: str | None = None
    # `train` in hard-negative rounds: round k > 1 mines the training queries with round
    # k - 1's model and trains from it on those negatives (rounds.py); 1: one plain run
    rounds: int = 1
    export: ExportConfig = field(default_factory=ExportConfig)  # what `export` writes
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # csv, tensorboard, wandb, mlflow

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        validation = self.validation
        if validation.enabled and self.dataset.dev is None and not validation.held_out_queries:
            raise ValueError(
                f"validation.every={validation.every} needs queries to validate on: set "
                "dataset.dev or validation.held_out_queries (e.g. 100)"
            )


def load_experiment(cfg: DictConfig) -> ExperimentConfig:
    """Validate a composed config and build its component objects (no model is loaded yet)."""
    experiment = to_objects(cfg)
    if not isinstance(experiment, ExperimentConfig):
        raise ConfigError(f"expected an ExperimentConfig root, got {type(experiment).__name__}")
    return experiment


def run_train(
    experiment: ExperimentConfig, output_dir: Path, overrides: list[str] | None = None
) -> dict[str, float]:
    """Train the model on the train split, then evaluate it on the test split; returns metrics.
    `overrides` (the command line's) are saved with the run for `resume`."""
    started = time.perf_counter()
    relaunch = experiment.resume == AUTO  # its folder may hold an earlier launch's start
    if relaunch:
        experiment = replace(
            experiment, resume=str(output_dir) if has_checkpoint(output_dir) else None
        )
    check_components(experiment, "train")
    if experiment.dataset.train is None:
        raise ConfigError(f"dataset.train is not set in dataset {experiment.dataset.name!r}")
    # several processes (torchrun): all train, the main one alone writes, validates, evaluates
    world = distributed.world()
    if world.main:
        claim_run_dir(output_dir, resuming=relaunch or experiment.resume is not None)
    # every check that can refuse the run comes before anything is written into it
    device = distributed.local_device(resolve_device(experiment.device))
    train, test = experiment.dataset.train.load(), experiment.dataset.test.load()
    test.check_measurable()
    candidates = _first_stage(experiment, test)  # checked now rather than after training
    train, validation = _validation_split(experiment, train)
    measures = {"evaluation.metrics": experiment.evaluation.metrics}
    if validation is not None:
        validation.check_measurable()
        measures["validation.metric"] = [experiment.validation.metric]
    check_computable(measures, test.qrels)
    checkpoint = None if experiment.resume is None else last_checkpoint(Path(experiment.resume))
    if world.main:
        resolved = _record_config(experiment, output_dir, overrides)
        logger.info("Train split: %s", train)
        _record_environment(output_dir, device, train=train, test=test)
    else:
        seed_everything(experiment.seed)
    model_config = experiment.model
    if checkpoint is not None:
        logger.info("Resuming from %s", checkpoint)
        model_config = replace(model_config, name_or_path=str(checkpoint))
    model = model_config.build().to(device)
    if checkpoint is None:
        model.prepare(train)  # e.g. IDF query weights, from the training documents
    before = None
    if experiment.evaluate_before_training and checkpoint is None and world.main:
        before = _evaluate(
            model, test, candidates, experiment, device, output_dir, started, "before_training_"
        )
    sampler = experiment.sampler
    if experiment.teacher.enabled:
        teacher_run = None
        if world.main:  # the others read the run it wrote
            teacher_run = experiment.teacher.write_run(
                train,
                output_dir / "teacher_run.trec",
                experiment.evaluation.batching,
                device,
                experiment.precision,
            )
        sampler = replace(sampler, teacher_run=str(distributed.broadcast(teacher_run)))
    learner = Learner(
        model=model,
        collection=train,
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
    # schedules of loss terms (warm-ups, margins): every process steps them
    loss_hooks = [hook for name, loss in experiment.losses.items() for hook in loss.hooks(name)]
    # under torchrun with evaluation.shard_size, every process encodes its shards of the test
    # documents, with the main process's final (or best) weights
    shares_encoding = world.parallel and _searches_in_shards(experiment, candidates)
    if not world.main:
        learner.fit(loss_hooks)
        if shares_encoding:
            distributed.broadcast_parameters(model)
            sharding = _sharding(experiment.evaluation, device, output_dir / "encoded", world)
            documents = test.document_texts()
            provenance = index_provenance(model, test.documents)
            settings = (experiment.evaluation.batching, experiment.precision, provenance)
            sharding.encode(model, documents, *settings)
        return {}
    checkpoints = Checkpointer(
        output_dir / "checkpoints",
        every=experiment.trainer.checkpoint_every,
        keep=experiment.trainer.keep_checkpoints,
        save=learner.save_checkpoint,
        minutes=experiment.trainer.checkpoint_minutes,
    )
    every = experiment.trainer.log_every
    trackers = experiment.logger.hooks(output_dir, every, learner.step, resolved)
    hooks = [
        *loss_hooks,
        ProgressBar(),
        *trackers,
        checkpoints,
    ]
    best = None
    if validation is not None:
        settings = experiment.validation
        index = replace(experiment.index, save=False, load=None)
        best = BestModel(model, settings.metric, settings.patience)
        hooks.append(best)
        validator = Validator(
            model,
            settings,
            validation,
            index,
            experiment.evaluation.batching,
            device,
            experiment.precision,
            listeners=hooks,
        )
        hooks.insert(0, validator)  # first: a checkpoint of a step includes its validation
    learner.fit(hooks)
    if best is not None and experiment.validation.restore_best:
        best.restore()
    if shares_encoding:
        distributed.broadcast_parameters(model)
    after = _evaluate(model, test, candidates, experiment, device, output_dir, started, world=world)
    for tracker in trackers:
        if isinstance(tracker, ExperimentTracker):
            tracker.finish(after.aggregate)
    print(_table(test, {"before": before, "after": after}))
    print(f"Trained model: {checkpoints.last}")
    return after.aggregate


def _validation_split(
    experiment: ExperimentConfig, train: Collection
) -> tuple[Collection, Collection | None]:
    """The training collection and the one to validate on (None without validation)."""
    settings = experiment.validation
    if not settings.enabled:
        return train, None
    if experiment.dataset.dev is not None:
        return train, experiment.dataset.dev.load()
    train, held_out = train.hold_out(settings.held_out_queries, experiment.seed)
    logger.info("Validating on %s", held_out)
    return train, held_out


def without_unset_train_split(cfg: DictConfig) -> DictConfig:
    """`cfg` without a train split left incomplete (`dataset=beir_folder
    dataset.test.beir_folder=…` alone): evaluating or exporting needs only the test split."""
    train = cfg.dataset.get("train")
    unset = train is not None and (
        OmegaConf.missing_keys(train) or (train.ir_datasets is None and train.beir_folder is None)
    )
    if not unset:
        return cfg
    cfg = cfg.copy()
    cfg.dataset.train = None
    return cfg


def run_evaluate(
    experiment: ExperimentConfig, output_dir: Path, overrides: list[str] | None = None
) -> dict[str, float]:
    """Evaluate the configured model on the test split; returns the aggregate metrics."""
    check_components(experiment, "evaluate")
    return _evaluate_command(experiment, output_dir, overrides)


def run_mine(
    experiment: ExperimentConfig, output_dir: Path, overrides: list[str] | None = None
) -> dict[str, float]:
    """Rank the training queries with the configured model: its run.trec is a run of hard
    negatives for `sampler.hard_negatives.run_file` (and its metrics, the train split's)."""
    check_components(experiment, "mine")
    if experiment.dataset.train is None:
        raise ConfigError(f"dataset.train is not set in dataset {experiment.dataset.name!r}")
    dataset = replace(experiment.dataset, test=experiment.dataset.train)
    return _evaluate_command(replace(experiment, dataset=dataset), output_dir, overrides)


def run_export(
    experiment: ExperimentConfig, output_dir: Path, overrides: list[str] | None = None
) -> dict[str, float]:
    """Encode the test split's documents and queries with the model into `<run dir>/export/`:
    Anserini files for a SPLADE model, `.npy` vectors for a dense one (see export.py)."""
    check_components(experiment, "export")
    claim_run_dir(output_dir, resuming=False)
    device = resolve_device(experiment.device)
    collection = experiment.dataset.test.load()
    _record_config(experiment, output_dir, overrides)
    model = experiment.model.build().to(device)
    folder = output_dir / "export"
    batching = experiment.evaluation.batching
    manifest = export_collection(
        model, collection, folder, experiment.export, batching, device, experiment.precision
    )
    print(f"Exported {collection.name} ({manifest['kind']}) to {folder}")
    return {"documents": float(len(collection.documents)), "queries": len(collection.queries)}


def _evaluate_command(
    experiment: ExperimentConfig, output_dir: Path, overrides: list[str] | None
) -> dict[str, float]:
    started = time.perf_counter()
    # resume=<its folder> (or auto): continue an interrupted evaluation there, from its shards
    claim_run_dir(output_dir, resuming=experiment.resume is not None)
    device = resolve_device(experiment.device)
    test = experiment.dataset.test.load()
    test.check_measurable()
    check_computable({"evaluation.metrics": experiment.evaluation.metrics}, test.qrels)
    candidates = _first_stage(experiment, test)
    _record_config(experiment, output_dir, overrides)
    _record_environment(output_dir, device, test=test)
    model = experiment.model.build().to(device)
    metrics = _evaluate(model, test, candidates, experiment, device, output_dir, started)
    name = getattr(experiment.model, "name_or_path", type(experiment.model).__name__)
    print(_table(test, {name: metrics}))
    return metrics.aggregate


def _first_stage(experiment: ExperimentConfig, test: Collection) -> Run | None:
    """The candidates to re-rank on the test split (None: search the whole collection)."""
    first_stage = experiment.evaluation.rerank
    return first_stage.run(test, "evaluation.rerank") if first_stage.enabled else None


def _evaluate(
    model: RetrievalModel,
    collection: Collection,
    candidates: Run | None,
    experiment: ExperimentConfig,
    device: torch.device,
    output_dir: Path,
    started: float,
    prefix: str = "",
    world: World = ALONE,
) -> Metrics:
    """Re-rank `candidates` (or, without them, search the collection) for every test query;
    write `<prefix>run.trec` and `<prefix>metrics.json`."""
    settings = experiment.evaluation
    logger.info("Evaluating on %s", collection)
    if candidates is not None:
        retrieval = rerank_candidates(
            model, collection, candidates, settings.batching, device, experiment.precision
        )
    else:
        retrieval = retrieve(
            model,
            collection,
            experiment.index,
            settings.top_k,
            settings.batching,
            device,
            experiment.precision,
            save_to=output_dir / f"{prefix}index" if experiment.index.save else None,
            sharding=_sharding(settings, device, output_dir / f"{prefix}encoded", world),
        )
    write_trec_run(output_dir / f"{prefix}run.trec", retrieval.run, settings.run_tag)
    metrics = compute_metrics(retrieval.run, collection.qrels, settings.metrics)
    write_json(
        output_dir / f"{prefix}metrics.json",
        {
            "dataset": collection.name,
            "documents": len(collection.documents),
            "queries": len(collection.queries),
            "wall_seconds": time.perf_counter() - started,  # of the command so far
            "index": retrieval.statistics,
            "aggregate": metrics.aggregate,
            "per_query": metrics.per_query,
        },
    )
    logger.info("%s", ", ".join(f"{k}={v:.4f}" for k, v in metrics.aggregate.items()))
    return metrics


def _sharding(
    settings: EvaluationConfig, device: torch.device, folder: Path, world: World = ALONE
) -> Sharding | None:
    """How the documents are encoded in shards, if `evaluation.shard_size` asks for it: by
    the processes of `world` (torchrun), or one process per device of `evaluation.devices`."""
    if settings.shard_size is None:
        return None
    if world.parallel and settings.devices is not None:
        raise ConfigError(
            "evaluation.devices: under torchrun each process encodes its shards on its own "
            "device; drop evaluation.devices"
        )
    devices = (
        [device] if settings.devices is None else [resolve_device(d) for d in settings.devices]
    )
    return Sharding(folder, settings.shard_size, tuple(devices), world)


def _searches_in_shards(experiment: ExperimentConfig, candidates: Run | None) -> bool:
    """The final evaluation encodes the test documents in shards (rather than re-ranking
    candidates or opening a saved index)."""
    settings = experiment.evaluation
    return settings.shard_size is not None and candidates is None and experiment.index.load is None


def _record_config(
    experiment: ExperimentConfig, output_dir: Path, overrides: list[str] | None
) -> dict:
    """Write the resolved config (it rebuilds the run as it was) and the overrides (what a
    resume recomposes it from), then seed: once every check that could refuse the run passed.
    Returns the resolved config as plain containers (what trackers record)."""
    resolved = OmegaConf.structured(experiment)
    write_text(output_dir / "config.yaml", OmegaConf.to_yaml(resolved))
    if overrides is not None:
        write_overrides(output_dir, overrides)
    seed_everything(experiment.seed)
    return OmegaConf.to_container(resolved, enum_to_str=True)


def _record_environment(output_dir: Path, device: torch.device, **splits: Collection) -> None:
    """environment.json: versions, commit, command, device and the data the run used."""
    datasets = {
        role: {"name": c.name, "documents": len(c.documents), "queries": len(c.queries)}
        for role, c in splits.items()
    }
    processes = distributed.world().size  # training processes (torchrun), each on a device
    write_environment(
        output_dir, {"device": str(device), "processes": processes, "datasets": datasets}
    )


def _table(collection: Collection, columns: dict[str, Metrics | None]) -> str:
    """A plain-text table of aggregate metrics, one column per model state."""
    shown = {name: metrics for name, metrics in columns.items() if metrics is not None}
    names = list(next(iter(shown.values())).aggregate)
    header = f"{collection.name} ({len(collection.queries)} queries)"
    width = max(len(header), *(len(n) for n in names))
    lines = [header.ljust(width) + "".join(f"  {name:>10}" for name in shown)]
    for measure in names:
        cells = "".join(f"  {m.aggregate[measure]:>10.4f}" for m in shown.values())
        lines.append(measure.ljust(width) + cells)
    return "\n".join(lines)
