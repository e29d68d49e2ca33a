"""`python -m xpretrieval report DIR`: every run under DIR (a Hydra multirun folder, or any
folder of runs) in one table, sorted by a metric, with a plot of that metric against the
swept parameter. Writes report.md, report.csv and report.png into DIR."""

from __future__ import annotations

import argparse
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from xpretrieval.errors import UserInputError
from xpretrieval.io import atomic_file, write_text

INDEX_COLUMNS = ("query_active_dims", "doc_active_dims")


@dataclass(frozen=True)
class RunSummary:
    """One run: where it is, the overrides that made it, its metrics and its index statistics."""

    path: Path
    overrides: dict[str, str]
    metrics: dict[str, float]
    index: dict[str, float]
    wall_seconds: float | None


def find_runs(root: Path) -> list[RunSummary]:
    """Every run below `root`: a folder with a metrics.json (not a before-training one)."""
    runs = []
    for metrics_file in sorted(root.rglob("metrics.json")):
        data = json.loads(metrics_file.read_text(encoding="utf-8"))
        folder = metrics_file.parent
        overrides_file = folder / ".hydra" / "overrides.yaml"
        overrides = {}
        if overrides_file.is_file():
            for item in yaml.safe_load(overrides_file.read_text(encoding="utf-8")) or []:
                key, _, value = item.partition("=")
                overrides[key.lstrip("+~")] = value
        runs.append(
            RunSummary(
                folder,
                overrides,
                data["aggregate"],
                data.get("index", {}),
                data.get("wall_seconds"),
            )
        )
    if not runs:
        raise UserInputError(f"{root}: no run below it has a metrics.json")
    return runs


def swept(runs: list[RunSummary]) -> list[str]:
    """Override keys whose values differ between runs: the parameters of the sweep."""
    keys = sorted({key for run in runs for key in run.overrides})
    return [key for key in keys if len({run.overrides.get(key) for run in runs}) > 1]


def table(runs: list[RunSummary], metric: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows (best `metric` first): run, swept parameters, metrics, sparsity, time."""
    if any(metric not in run.metrics for run in runs):
        raise UserInputError(f"--metric {metric!r} is not measured by every run")
    parameters = swept(runs)
    measures = list(runs[0].metrics)
    index_columns = [c for c in INDEX_COLUMNS if all(c in run.index for run in runs)]
    header = ["run", *parameters, *measures, *index_columns, "wall_seconds"]
    rows = []
    for run in sorted(runs, key=lambda r: -r.metrics[metric]):
        rows.append(
            [
                run.path.name,
                *(run.overrides.get(p, "") for p in parameters),
                *(f"{run.metrics.get(m, float('nan')):.4f}" for m in measures),
                *(f"{run.index[c]:.1f}" for c in index_columns),
                "" if run.wall_seconds is None else f"{run.wall_seconds:.0f}",
            ]
        )
    return header, rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot(runs: list[RunSummary], metric: str, path: Path) -> bool:
    """PNG of `metric` (and documents' active dimensions, when known) against the one numeric
    swept parameter; False when the sweep has no single numeric parameter."""
    parameters = swept(runs)
    if len(parameters) != 1:
        return False
    try:
        points = sorted((float(run.overrides[parameters[0]]), run) for run in runs)
    except (KeyError, ValueError):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    xs = [x for x, _ in points]
    axis.plot(xs, [run.metrics[metric] for _, run in points], "o-", color="tab:blue")
    axis.set_xlabel(parameters[0])
    axis.set_ylabel(metric, color="tab:blue")
    if min(xs) > 0 and max(xs) / min(xs) >= 100:
        axis.set_xscale("log")
    if all("postings" in run.index for _, run in points):  # sparse indexes: the trade-off
        sparsity = axis.twinx()
        active = [run.index["doc_active_dims"] for _, run in points]
        sparsity.plot(xs, active, "s--", color="tab:orange")
        sparsity.set_ylabel("active dimensions per document", color="tab:orange")
    axis.set_title(f"{metric} against {parameters[0]}")
    figure.tight_layout()
    with atomic_file(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=120)
    plt.close(figure)
    return True


def write_report(root: Path, metric: str) -> str:
    """Write report.md, report.csv (and report.png) into `root`; returns the markdown table."""
    runs = find_runs(root)
    header, rows = table(runs, metric)
    text = markdown(header, rows)
    write_text(root / "report.md", text)
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *rows])
    write_text(root / "report.csv", buffer.getvalue())
    plot(runs, metric, root / "report.png")
    return text


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m xpretrieval report", description=__doc__)
    parser.add_argument("folder", type=Path, help="a multirun folder, or any folder of runs")
    parser.add_argument("--metric", default="nDCG@10", help="sort by this measure (nDCG@10)")
    options = parser.parse_args(args)
    if not options.folder.is_dir():
        raise UserInputError(f"{options.folder} is not a folder")
    print(write_report(options.folder, options.metric), end="")
