"""Running a benchmark suite (`suite=beir_small`): the loaded model measured on each collection
in turn (read, cut, measured, recorded in `suite/<name>/`, freed), then one table of them all:
`suite.md`, `suite.csv`, `suite.json`, and a `metrics.json` holding the mean over collections
and every query's values (`<name>/<query id>`), which `report` compares. A resumed suite skips
the collections whose metrics.json is complete."""

from __future__ import annotations

import csv
import gc
import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from xpretrieval.commands.experiment import ExperimentConfig
from xpretrieval.commands.resume import saved_and_given, under
from xpretrieval.core.errors import ConfigError
from xpretrieval.core.io import markdown_table, write_json, write_text
from xpretrieval.data.collection import Collection
from xpretrieval.evaluation.measures import Metrics, check_computable
from xpretrieval.evaluation.suites import collection_name, group_of, suite_mean

logger = logging.getLogger(__name__)

# measure the loaded model on a collection: write run.trec and metrics.json into the folder
# (with `wall_seconds` counted from the start given), return the metrics
Measure = Callable[[Collection, Path, float], Metrics]

# what a resumed suite must keep: the collections measured before were measured with these
KEPT_ON_RESUME = (
    "suite",
    "model",
    "seed",
    "precision",
    "index",
    "evaluation.metrics",
    "evaluation.top_k",
    "evaluation.rerank",
)


@dataclass(frozen=True)
class Measured:
    """One collection's results, as its metrics.json records them."""

    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]
    documents: int
    queries: int
    seconds: float


def evaluate_suite(
    experiment: ExperimentConfig,
    measure: Measure,
    output_dir: Path,
    started: float,
    prefix: str = "",
    measured: Path | None = None,
) -> Metrics:
    """Measure every collection of `experiment.suite` (skipping those a complete
    `<prefix>suite/<name>/metrics.json` of the same `measured` checkpoint holds), write the
    suite's table and `<prefix>metrics.json`, print the table; returns the mean over
    collections and the pooled per-query values."""
    suite, metrics = experiment.suite, experiment.evaluation.metrics
    results: dict[str, Measured] = {}
    for number, entry in enumerate(suite.collections, start=1):
        name = collection_name(entry)
        folder = output_dir / f"{prefix}suite" / name
        where = f"collection {number}/{len(suite.collections)}: {name}"
        done = finished(folder / "metrics.json", metrics, measured)
        if done is not None:
            logger.info("%s, measured before (%s): skipped", where, folder / "metrics.json")
            results[name] = done
            continue
        results[name] = measure_collection(experiment, entry, measure, folder, where)
        gc.collect()  # the collection and its encodings are gone before the next one loads
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    summary = record_suite(results, output_dir, prefix, started, measured)
    print(suite_table(results, summary.aggregate, "text"))
    return summary


def measure_collection(
    experiment: ExperimentConfig, entry: str, measure: Measure, folder: Path, where: str
) -> Measured:
    """Read (and cut) one collection of the suite, check it can be measured, measure it into
    `folder`; only its results outlive the call."""
    begun = time.perf_counter()
    collection = experiment.suite.load(entry, experiment.seed)
    documents, queries = len(collection.documents), len(collection.queries)
    logger.info("%s, %s documents, %s queries", where, f"{documents:,}", f"{queries:,}")
    collection.check_measurable()
    check_computable({"evaluation.metrics": experiment.evaluation.metrics}, collection.qrels)
    values = measure(collection, folder, begun)
    seconds = time.perf_counter() - begun
    return Measured(values.aggregate, values.per_query, documents, queries, seconds)


def finished(path: Path, metrics: list[str], measured: Path | None) -> Measured | None:
    """The results in a collection's metrics.json if it is complete (every measure, per-query
    values) and measured `measured` (None: untrained weights); None: measure it (again)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    aggregate, per_query = data.get("aggregate"), data.get("per_query")
    complete = isinstance(aggregate, dict) and isinstance(per_query, dict)
    if not complete or any(name not in aggregate for name in metrics):
        return None
    if data.get("checkpoint") != (None if measured is None else str(measured)):
        return None  # other weights: measured before a resumed training went on
    return Measured(
        {name: aggregate[name] for name in metrics},
        per_query,
        int(data.get("documents", 0)),
        int(data.get("queries", 0)),
        float(data.get("wall_seconds", 0.0)),
    )


def record_suite(
    results: dict[str, Measured],
    output_dir: Path,
    prefix: str,
    started: float,
    measured: Path | None,
) -> Metrics:
    """Write `<prefix>suite.json`, `.csv`, `.md` and `<prefix>metrics.json` (the mean over
    collections, each collection's aggregate, the pooled per-query values `<name>/<query
    id>`); returns the mean and the pooled values."""
    mean = suite_mean({name: result.aggregate for name, result in results.items()})
    pooled = {
        f"{name}/{query_id}": values
        for name, result in results.items()
        for query_id, values in result.per_query.items()
    }
    table = {
        "collections": {
            name: {
                **result.aggregate,
                "documents": result.documents,
                "queries": result.queries,
                "seconds": result.seconds,
            }
            for name, result in results.items()
        },
        "groups": {group: values for group, (_, values) in groups(results).items()},
        "mean": mean,
    }
    write_json(output_dir / f"{prefix}suite.json", table)
    write_text(output_dir / f"{prefix}suite.csv", suite_table(results, mean, "csv"))
    write_text(output_dir / f"{prefix}suite.md", suite_table(results, mean, "markdown"))
    write_json(
        output_dir / f"{prefix}metrics.json",
        {
            "dataset": f"suite of {len(results)} collections",
            "suite": list(results),
            "documents": sum(result.documents for result in results.values()),
            "queries": sum(result.queries for result in results.values()),
            "wall_seconds": time.perf_counter() - started,  # of the command so far
            **({} if measured is None else {"checkpoint": str(measured)}),
            "aggregate": mean,
            "collections": {name: result.aggregate for name, result in results.items()},
            "per_query": pooled,
        },
    )
    return Metrics(mean, pooled)


def groups(results: dict[str, Measured]) -> dict[str, tuple[int, dict[str, float]]]:
    """Groups of several collections (`cqadupstack/<forum>`): their size and mean."""
    members: dict[str, list[dict[str, float]]] = {}
    for name, result in results.items():
        members.setdefault(group_of(name), []).append(result.aggregate)
    return {
        group: (len(rows), {m: sum(row[m] for row in rows) / len(rows) for m in rows[0]})
        for group, rows in members.items()
        if len(rows) > 1
    }


def suite_table(results: dict[str, Measured], mean: dict[str, float], style: str) -> str:
    """The suite as a table (`text`, `markdown` or `csv`): a row per collection, a row per
    group of several, and the mean over collections (each group counted once)."""
    measures = list(mean)
    header = ["collection", *measures, "documents", "queries", "seconds"]
    rows = [
        [
            name,
            *(f"{result.aggregate[m]:.4f}" for m in measures),
            f"{result.documents:,}" if style != "csv" else str(result.documents),
            str(result.queries),
            f"{result.seconds:.1f}",
        ]
        for name, result in results.items()
    ]
    for group, (size, values) in groups(results).items():
        rows.append([f"{group} (mean of {size})", *(f"{values[m]:.4f}" for m in measures)])
    label = f"mean ({len(results)} collection{'s' if len(results) > 1 else ''})"
    rows.append([label, *(f"{mean[m]:.4f}" for m in measures)])
    rows = [row + [""] * (len(header) - len(row)) for row in rows]
    if style == "csv":
        buffer = io.StringIO()
        csv.writer(buffer).writerows([header, *rows])
        return buffer.getvalue()
    if style == "markdown":
        return markdown_table(header, rows)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def check_suite(experiment: ExperimentConfig, command: str) -> None:
    """A suite fits the command and the evaluation settings: refuse what serves one collection
    only (a saved index, a first-stage run file), and a resume that would mix settings."""
    if not experiment.suite.enabled:
        return
    if command in ("mine", "export"):
        raise ConfigError(f"suite: `{command}` works on the dataset's splits; drop suite=")
    rerank = experiment.evaluation.rerank
    if rerank.enabled and (rerank.run_file is not None or rerank.scoreddocs is not None):
        raise ConfigError(
            "evaluation.rerank: a run file or scoreddocs ranks one collection; a suite "
            "re-ranks BM25's candidates of each (set run_file and scoreddocs to null)"
        )
    if experiment.index.load is not None:
        raise ConfigError("index.load: a saved index holds one collection; drop it with suite=")


def check_suite_resume(experiment: ExperimentConfig, run_dir: Path) -> None:
    """Refuse resuming an evaluation whose saved config.yaml measured another suite, model or
    measures (`KEPT_ON_RESUME`): its finished collections would not be comparable."""
    if not (run_dir / "config.yaml").is_file():
        return  # nothing recorded yet: nothing to mix with
    saved, now = saved_and_given(experiment, run_dir)
    if not saved.get("suite.collections") and not experiment.suite.enabled:
        return
    for key in sorted(saved.keys() | now.keys()):
        if under(key, KEPT_ON_RESUME) and saved.get(key) != now.get(key):
            raise ConfigError(
                f"{key}: resume={run_dir} measured its suite with {saved.get(key)}, not "
                f"{now.get(key)}; give the run's own overrides again "
                f"({run_dir / '.hydra' / 'overrides.yaml'}) or start a new run"
            )
