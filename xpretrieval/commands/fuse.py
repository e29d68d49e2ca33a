"""`python -m xpretrieval fuse RUN RUN... [--method rrf|wsum|comb_mnz]`: one ranking from
several runs of the same test collection (a dense and a sparse run, say; evaluation/fusion.py),
measured like any run. Writes a run directory (config.yaml: the collection and the fusion;
run.trec; metrics.json with per-query values) that `report` compares with the runs it came from
and that `fuse` itself can fuse again. Runs of one suite (`evaluate suite=...`) are fused
collection by collection into a suite run of their own (`suite/<name>/`, the suite's table)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from xpretrieval.commands.evaluate import write_metrics
from xpretrieval.commands.run_dir import claim_run_dir
from xpretrieval.commands.suite import Measured, record_suite, suite_table
from xpretrieval.core.config import to_objects
from xpretrieval.core.errors import DataError, UserInputError
from xpretrieval.core.io import write_text
from xpretrieval.data.collection import Collection
from xpretrieval.data.dataset import DatasetConfig
from xpretrieval.data.run import read_trec_run, write_trec_run
from xpretrieval.evaluation.fusion import METHODS, NORMS, fuse_runs
from xpretrieval.evaluation.measures import Metrics, compute_metrics
from xpretrieval.evaluation.suites import SuiteConfig, collection_name


def fuse_run_dirs(
    folders: list[Path], output: Path, method: str, weights: list[float] | None, norm: str
) -> dict[str, float]:
    """Fuse the run.trec of run directories of one test collection into `output`, measured on
    that collection's judgements with the first run's measures; returns the aggregate."""
    started = time.perf_counter()
    if len(folders) < 2:
        raise UserInputError("fuse needs at least two runs")
    runs = [str(folder) for folder in folders]
    settings = {"runs": runs, "method": method, "weights": weights, "norm": norm}
    suites = [(folder / "suite.json").is_file() for folder in folders]
    if any(suites):
        if not all(suites):
            single, suite = folders[suites.index(False)], folders[suites.index(True)]
            raise UserInputError(
                f"{single} ranks one collection, {suite} a suite: fuse runs of one collection, "
                "or runs of one suite"
            )
        return _fuse_suites(folders, output, settings, started)
    measured = [_measured(folder) for folder in folders]
    collections = {metrics["dataset"] for metrics in measured}
    if len(collections) != 1:
        raise UserInputError(
            f"the runs rank different collections: {', '.join(sorted(collections))}"
        )
    dataset = _saved(folders[0])["dataset"]
    claim_run_dir(output, "fuse", resuming=False)  # refuses a folder that holds a run
    write_text(output / "config.yaml", OmegaConf.to_yaml({"dataset": dataset, "fuse": settings}))
    test = to_objects(OmegaConf.merge(OmegaConf.structured(DatasetConfig), dataset)).test.load()
    measures = list(measured[0]["aggregate"])
    return _fuse_collection(folders, measures, test, output, settings, started).aggregate


def _fuse_suites(
    folders: list[Path], output: Path, settings: dict[str, Any], started: float
) -> dict[str, float]:
    """Runs of one suite (the same collections, cut with the same seed) fused collection by
    collection into `output/suite/<name>/`, then the suite's table and mean, as `evaluate
    suite=...` writes them; returns the mean over collections."""
    saved = [_saved(folder) for folder in folders]
    suite, seed = saved[0]["suite"], saved[0]["seed"]
    for folder, config in zip(folders[1:], saved[1:], strict=True):
        if (config["suite"], config["seed"]) != (suite, seed):
            raise UserInputError(
                f"{folder}: measured another suite (or nano cut) than {folders[0]}; fuse runs "
                "of one suite"
            )
    collections = to_objects(OmegaConf.merge(OmegaConf.structured(SuiteConfig), suite))
    claim_run_dir(output, "fuse", resuming=False)  # refuses a folder that holds a run
    record = {"suite": suite, "seed": seed, "fuse": settings}
    write_text(output / "config.yaml", OmegaConf.to_yaml(record))
    results = {}
    for entry in collections.collections:
        name, begun = collection_name(entry), time.perf_counter()
        collection = collections.load(entry, seed)  # cut as the runs' collections were
        parts = [folder / "suite" / name for folder in folders]
        measured = [_measured(part) for part in parts]  # each finished, or one line naming it
        measures = list(measured[0]["aggregate"])
        into = output / "suite" / name
        metrics = _fuse_collection(parts, measures, collection, into, settings, begun)
        seconds = time.perf_counter() - begun
        documents, queries = len(collection.documents), len(collection.queries)
        results[name] = Measured(metrics.aggregate, metrics.per_query, documents, queries, seconds)
    summary = record_suite(results, output, "", started, None)
    print(suite_table(results, summary.aggregate, "text"))
    return summary.aggregate


def _fuse_collection(
    folders: list[Path],
    measures: list[str],
    collection: Collection,
    output: Path,
    settings: dict[str, Any],
    started: float,
) -> Metrics:
    """The finished runs in `folders`, of `collection`, fused as `settings` say into
    `output`'s run.trec and metrics.json, with `measures`."""
    runs = [read_trec_run(folder / "run.trec") for folder in folders]
    method = settings["method"]
    fused = fuse_runs(runs, method, settings["weights"], settings["norm"])
    write_trec_run(output / "run.trec", fused, f"fuse-{method}")
    metrics = compute_metrics(fused, collection.qrels, measures)
    write_metrics(output / "metrics.json", collection, metrics, started, {"fused": settings})
    return metrics


def _measured(folder: Path) -> dict[str, Any]:
    """A finished run's metrics.json (its collection and measures), or one line naming it."""
    file = folder / "metrics.json"
    if not (folder / "run.trec").is_file() or not file.is_file():
        raise DataError(f"{folder}: not a finished run (run.trec and metrics.json expected)")
    return json.loads(file.read_text(encoding="utf-8"))


def _saved(folder: Path) -> dict[str, Any]:
    """A run's saved config.yaml (resolved), or one line naming the folder."""
    file = folder / "config.yaml"
    if not file.is_file():
        raise DataError(f"{folder}: no config.yaml to read its test collection from")
    return OmegaConf.to_container(OmegaConf.load(file), resolve=True)


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m xpretrieval fuse", description=__doc__)
    parser.add_argument(
        "runs", type=Path, nargs="+", help="run directories of one collection (or one suite)"
    )
    parser.add_argument("--method", default="rrf", choices=METHODS, help="fusion method (rrf)")
    parser.add_argument("--weights", type=float, nargs="+", help="one per run (default: 1 each)")
    parser.add_argument("--norm", default="min-max", choices=NORMS, help="wsum, comb_mnz scores")
    parser.add_argument("--output", type=Path, help="the fused run's folder (outputs/fuse/<time>)")
    options = parser.parse_args(args)
    output = options.output or Path("outputs/fuse") / time.strftime("%Y-%m-%d_%H-%M-%S")
    aggregate = fuse_run_dirs(options.runs, output, options.method, options.weights, options.norm)
    print(", ".join(f"{name}={value:.4f}" for name, value in aggregate.items()))
    print(f"Fused run: {output}")
