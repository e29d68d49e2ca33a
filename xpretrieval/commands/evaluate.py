"""`evaluate` and `mine`: rank a split with the configured model, write its run and measures.
Also the final evaluation of `train`, which measures the trained model the same way."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import torch

from xpretrieval.commands.experiment import ExperimentConfig
from xpretrieval.commands.run_dir import claim_run_dir, record_config, record_environment
from xpretrieval.commands.suite import Measure, evaluate_suite
from xpretrieval.commands.validate import validate
from xpretrieval.core.device import resolve_device
from xpretrieval.core.distributed import ALONE, World
from xpretrieval.core.errors import ConfigError
from xpretrieval.core.io import write_json
from xpretrieval.data.collection import Collection
from xpretrieval.data.run import Run, write_trec_run
from xpretrieval.evaluation.measures import (
    EvaluationConfig,
    Metrics,
    check_computable,
    compute_metrics,
)
from xpretrieval.models.base import RetrievalModel
from xpretrieval.retrieval.rerank import rerank_candidates
from xpretrieval.retrieval.retrieve import retrieve
from xpretrieval.retrieval.shards import Sharding
from xpretrieval.training.random_state import seed_everything

logger = logging.getLogger(__name__)


def run_evaluate(
    experiment: ExperimentConfig, output_dir: Path, overrides: list[str] | None = None
) -> dict[str, float]:
    """Evaluate the configured model on the test split, or on each collection of its suite;
    returns the aggregate metrics (of a suite: the mean over its collections)."""
    experiment = validate(experiment, "evaluate", output_dir)
    if experiment.suite.enabled:
        return _rank_suite(experiment, output_dir, overrides)
    return _rank_split(experiment, "evaluate", output_dir, overrides)


def _rank_suite(
    experiment: ExperimentConfig, output_dir: Path, overrides: list[str] | None
) -> dict[str, float]:
    """The model loaded once, then measured on the suite's collections one by one."""
    started = time.perf_counter()
    claim_run_dir(output_dir, "evaluate", resuming=experiment.resume is not None)
    device = resolve_device(experiment.device)
    seed_everything(experiment.seed)  # before the build: a new head draws its weights
    model = experiment.model.build().to(device)
    record_config(output_dir, experiment, overrides)
    record_environment(output_dir, "evaluate", device)
    measure = measurer(model, experiment, device)
    return evaluate_suite(experiment, measure, output_dir, started).aggregate


def run_mine(
    experiment: ExperimentConfig, output_dir: Path, overrides: list[str] | None = None
) -> dict[str, float]:
    """Rank the training queries with the configured model: its run.trec is a run of hard
    negatives for `sampler.hard_negatives.run_file` (and its metrics, the train split's)."""
    experiment = validate(experiment, "mine", output_dir)
    if experiment.dataset.train is None:
        raise ConfigError(f"dataset.train is not set in dataset {experiment.dataset.name!r}")
    dataset = replace(experiment.dataset, test=experiment.dataset.train)
    return _rank_split(replace(experiment, dataset=dataset), "mine", output_dir, overrides)


def _rank_split(
    experiment: ExperimentConfig, command: str, output_dir: Path, overrides: list[str] | None
) -> dict[str, float]:
    started = time.perf_counter()
    # resume=<its folder> (or auto): continue an interrupted evaluation there, from its shards
    claim_run_dir(output_dir, command, resuming=experiment.resume is not None)
    device = resolve_device(experiment.device)
    test = experiment.dataset.test.load()
    test.check_measurable()
    check_computable({"evaluation.metrics": experiment.evaluation.metrics}, test.qrels)
    candidates = first_stage(experiment, test)
    seed_everything(experiment.seed)  # before the build: a new head draws its weights
    model = experiment.model.build().to(device)  # a model that cannot load writes nothing
    record_config(output_dir, experiment, overrides)
    record_environment(output_dir, command, device, test=test)
    metrics = evaluate_model(model, test, candidates, experiment, device, output_dir, started)
    name = getattr(experiment.model, "name_or_path", type(experiment.model).__name__)
    print(metrics_table(test, {name: metrics}))
    return metrics.aggregate


def first_stage(experiment: ExperimentConfig, test: Collection) -> Run | None:
    """The candidates to re-rank on the test split (None: search the whole collection)."""
    candidates = experiment.evaluation.rerank
    return candidates.run(test, "evaluation.rerank") if candidates.enabled else None


def evaluate_model(
    model: RetrievalModel,
    collection: Collection,
    candidates: Run | None,
    experiment: ExperimentConfig,
    device: torch.device,
    output_dir: Path,
    started: float,
    prefix: str = "",
    world: World = ALONE,
    measured: Path | None = None,
) -> Metrics:
    """Re-rank `candidates` (or, without them, search the collection) for every test query;
    write `<prefix>run.trec` and `<prefix>metrics.json` (naming the `measured` checkpoint,
    the folder of the weights measured, when they were trained)."""
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
            sharding=sharding(settings, device, output_dir / f"{prefix}encoded", world),
        )
    write_trec_run(output_dir / f"{prefix}run.trec", retrieval.run, settings.run_tag)
    metrics = compute_metrics(retrieval.run, collection.qrels, settings.metrics)
    details = {} if measured is None else {"checkpoint": str(measured)}
    details["index"] = retrieval.statistics
    write_metrics(output_dir / f"{prefix}metrics.json", collection, metrics, started, details)
    logger.info("%s", ", ".join(f"{k}={v:.4f}" for k, v in metrics.aggregate.items()))
    return metrics


def write_metrics(
    path: Path, collection: Collection, metrics: Metrics, started: float, details: dict
) -> None:
    """metrics.json of a ranking: the collection, the command's time so far, `details` (what
    was measured: checkpoint, index statistics, fused runs), aggregate and per-query values."""
    write_json(
        path,
        {
            "dataset": collection.name,
            "documents": len(collection.documents),
            "queries": len(collection.queries),
            "wall_seconds": time.perf_counter() - started,
            **details,
            "aggregate": metrics.aggregate,
            "per_query": metrics.per_query,
        },
    )


def measurer(
    model: RetrievalModel,
    experiment: ExperimentConfig,
    device: torch.device,
    measured: Path | None = None,
) -> Measure:
    """`evaluate_model` of `model` on one collection of a suite, into its folder (re-ranking
    the first stage's candidates of that collection when `evaluation.rerank` asks for it)."""

    def measure(collection: Collection, folder: Path, started: float) -> Metrics:
        candidates = first_stage(experiment, collection)
        return evaluate_model(
            model, collection, candidates, experiment, device, folder, started, measured=measured
        )

    return measure


def sharding(
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


def metrics_table(collection: Collection, columns: dict[str, Metrics | None]) -> str:
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
