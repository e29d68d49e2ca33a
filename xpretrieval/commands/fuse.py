"""`python -m xpretrieval fuse RUN RUN... [--method rrf|wsum|comb_mnz]`: one ranking from
several runs of the same test collection (a dense and a sparse run, say; evaluation/fusion.py),
measured like any run. Writes a run directory (config.yaml: the collection and the fusion;
run.trec; metrics.json with per-query values) that `report` compares with the runs it came from
and that `fuse` itself can fuse again."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from xpretrieval.commands.evaluate import write_metrics
from xpretrieval.commands.run_dir import claim_run_dir
from xpretrieval.core.config import to_objects
from xpretrieval.core.errors import DataError, UserInputError
from xpretrieval.core.io import write_text
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
    measured = [_measured(folder) for folder in folders]
    collections = {metrics["dataset"] for metrics in measured}
    if len(collections) != 1:
        raise UserInputError(
            f"the runs rank different collections: {', '.join(sorted(collections))}"
        )
    dataset = _saved_dataset(folders[0])
    runs = [str(folder) for folder in folders]
    settings = {"runs": runs, "method": method, "weights": weights, "norm": norm}
    claim_run_dir(output, "fuse", resuming=False)  # refuses a folder that holds a run
    write_text(output / "config.yaml", OmegaConf.to_yaml({"dataset": dataset, "fuse": settings}))
    test = to_objects(OmegaConf.merge(OmegaConf.structured(DatasetConfig), dataset)).test.load()
    fused = fuse_runs(
        [read_trec_run(folder / "run.trec") for folder in folders], method, weights, norm
    )
    write_trec_run(output / "run.trec", fused, f"fuse-{method}")
    metrics = compute_metrics(fused, test.qrels, list(measured[0]["aggregate"]))
    write_metrics(output / "metrics.json", test, metrics, started, {"fused": settings})
    return metrics.aggregate


def _measured(folder: Path) -> dict[str, Any]:
    """A finished run's metrics.json (its collection and measures), or one line naming it."""
    file = folder / "metrics.json"
    if not (folder / "run.trec").is_file() or not file.is_file():
        raise DataError(f"{folder}: not a finished run (run.trec and metrics.json expected)")
    return json.loads(file.read_text(encoding="utf-8"))


def _saved_dataset(folder: Path) -> dict[str, Any]:
    """The dataset a run was measured on, from its saved config.yaml (resolved)."""
    file = folder / "config.yaml"
    if not file.is_file():
        raise DataError(f"{folder}: no config.yaml to read its test collection from")
    return OmegaConf.to_container(OmegaConf.load(file), resolve=True)["dataset"]


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
