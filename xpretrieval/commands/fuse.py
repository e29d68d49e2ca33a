"""`python -m xpretrieval fuse RUN RUN... [--method rrf|wsum|comb_mnz]`: one ranking from
several runs of the same test collection (a dense and a sparse run, say; evaluation/fusion.py),
measured like any run. Writes a run directory (run.trec, metrics.json with per-query values,
fuse.json) that `report` compares with the runs it came from."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from xpretrieval.commands.run_dir import claim_run_dir
from xpretrieval.core.config import to_objects
from xpretrieval.core.errors import DataError, RunDirectoryRefused, UserInputError
from xpretrieval.core.io import write_json
from xpretrieval.data.dataset import DatasetConfig
from xpretrieval.data.run import read_trec_run, write_trec_run
from xpretrieval.evaluation.fusion import METHODS, NORMS, fuse_runs
from xpretrieval.evaluation.measures import compute_metrics


def fuse_run_dirs(
    folders: list[Path], output: Path, method: str, weights: list[float] | None, norm: str
) -> dict[str, float]:
    """Fuse the run.trec of run directories of one test collection into `output`, measured on
    that collection's judgements with the first run's measures; returns the aggregate."""
    started = time.perf_counter()
    if len(folders) < 2:
        raise UserInputError("fuse needs at least two runs")
    collections = {_measured(folder)["dataset"] for folder in folders}
    if len(collections) != 1:
        raise UserInputError(
            f"the runs rank different collections: {', '.join(sorted(collections))}"
        )
    if output.is_dir() and any(output.iterdir()):  # a fused run is never overwritten
        raise RunDirectoryRefused(f"{output} already holds a run; choose another --output")
    claim_run_dir(output, "fuse", resuming=False)
    test = _test_split(folders[0]).load()
    runs = [read_trec_run(folder / "run.trec") for folder in folders]
    fused = fuse_runs(runs, method, weights, norm)
    measures = list(_measured(folders[0])["aggregate"])
    write_trec_run(output / "run.trec", fused, f"fuse-{method}")
    metrics = compute_metrics(fused, test.qrels, measures)
    settings = {
        "runs": [str(f) for f in folders],
        "method": method,
        "weights": weights,
        "norm": norm,
    }
    write_json(output / "fuse.json", settings)
    write_json(
        output / "metrics.json",
        {
            "dataset": test.name,
            "documents": len(test.documents),
            "queries": len(test.queries),
            "wall_seconds": time.perf_counter() - started,
            "fused": settings,
            "aggregate": metrics.aggregate,
            "per_query": metrics.per_query,
        },
    )
    return metrics.aggregate


def _measured(folder: Path) -> dict[str, Any]:
    """A finished run's metrics.json (its collection and measures), or one line naming it."""
    file = folder / "metrics.json"
    if not (folder / "run.trec").is_file() or not file.is_file():
        raise DataError(f"{folder}: not a finished run (run.trec and metrics.json expected)")
    return json.loads(file.read_text(encoding="utf-8"))


def _test_split(folder: Path) -> Any:
    """The test split a run was measured on, from its saved config.yaml."""
    file = folder / "config.yaml"
    if not file.is_file():
        raise DataError(f"{folder}: no config.yaml to read its test collection from")
    saved = OmegaConf.to_container(OmegaConf.load(file), resolve=True)["dataset"]
    dataset = to_objects(OmegaConf.merge(OmegaConf.structured(DatasetConfig), saved))
    return dataset.test


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m xpretrieval fuse", description=__doc__)
    parser.add_argument("runs", type=Path, nargs="+", help="run directories of one collection")
    parser.add_argument("--method", default="rrf", choices=METHODS, help="fusion method (rrf)")
    parser.add_argument("--weights", type=float, nargs="+", help="one per run (default: 1 each)")
    parser.add_argument("--norm", default="min-max", choices=NORMS, help="wsum, comb_mnz scores")
    parser.add_argument("--output", type=Path, help="the fused run's folder (outputs/fuse/<time>)")
    options = parser.parse_args(args)
    output = options.output or Path("outputs/fuse") / time.strftime("%Y-%m-%d_%H-%M-%S")
    aggregate = fuse_run_dirs(options.runs, output, options.method, options.weights, options.norm)
    print(", ".join(f"{name}={value:.4f}" for name, value in aggregate.items()))
    print(f"Fused run: {output}")
