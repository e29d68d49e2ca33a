"""`python -m xpretrieval report DIR`: every run under DIR (a Hydra multirun folder, or any
folder of runs) in one table, sorted by a metric, with paired significance tests against a
baseline run, a plot of that metric against the swept parameter, and the training curves.
Writes report.md, report.csv, report.png and report_training.png into DIR; runs whose indexes
differ in bytes per document (quantised and cut vectors) add the metric against that size,
in report.md and report_sizes.png."""

from __future__ import annotations

import argparse
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from xpretrieval.commands.report_plots import plot_sizes, plot_sweep, plot_training
from xpretrieval.commands.report_sizes import size_points, size_table
from xpretrieval.commands.run_dir import recorded_command
from xpretrieval.core.errors import UserInputError
from xpretrieval.core.io import markdown_table, write_text
from xpretrieval.evaluation.measures import paired_t_test

INDEX_COLUMNS = ("query_active_dims", "doc_active_dims")


@dataclass(frozen=True)
class RunSummary:
    """One run: where it is, the overrides that made it, its metrics and its index statistics."""

    path: Path
    overrides: dict[str, str]
    metrics: dict[str, float]
    index: dict[str, float]
    wall_seconds: float | None
    per_query: dict[str, dict[str, float]]
    # a suite run's aggregate metrics by collection (its `aggregate` is their mean, its
    # per-query values are keyed `<collection>/<query id>`); empty for a one-collection run
    collections: dict[str, dict[str, float]] = field(default_factory=dict)


def find_runs(root: Path) -> list[RunSummary]:
    """Every finished run below `root`: a folder with a metrics.json (not a before-training
    one). The metrics a checkpoint carries, a rounds run's copy of its last round (beside its
    rounds.json), a `mine` pass (a ranking of training queries) and the collections of a suite
    run (in its `suite/`) are not runs to compare. A metrics.json that is not complete JSON
    with an `aggregate` is a UserInputError."""
    runs = []
    for metrics_file in sorted(root.rglob("metrics.json")):
        folder = metrics_file.parent
        copied = folder.parent.name == "checkpoints" or (folder / "rounds.json").is_file()
        if copied or _in_suite(folder, root) or recorded_command(folder) == "mine":
            continue
        data = _read_metrics(metrics_file)
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
                data.get("per_query", {}),
                data.get("collections", {}),
            )
        )
    if not runs:
        raise UserInputError(f"{root}: no run below it has a metrics.json")
    return runs


def _in_suite(folder: Path, root: Path) -> bool:
    """Whether `folder` is one collection of a suite run: below a `[<prefix>]suite/` folder
    that has its `<prefix>suite.json` beside it."""
    for parent in folder.relative_to(root).parents:
        if parent.name.endswith("suite") and (root / parent.with_suffix(".json")).is_file():
            return True
    return False


def _read_metrics(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserInputError(
            f"{path}: not complete JSON ({error}); the run was cut off while writing it or the "
            "file was edited. Re-run that run's evaluation, or move its folder aside"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("aggregate"), dict):
        raise UserInputError(f'{path}: expected an object with an "aggregate" of metrics')
    return data


def unfinished_runs(root: Path) -> list[tuple[Path, str]]:
    """Run folders below `root` without a metrics.json (Hydra wrote their train.log or the run
    its config, but it never finished), each with why, from the last error of its log."""
    folders = {p.parent for p in root.rglob("*.log")} | {
        p.parent for p in root.rglob("config.yaml")
    }
    unfinished = []
    for folder in sorted(folders):
        if (folder / "metrics.json").is_file() or folder == root:
            continue
        errors = [
            line.split(" - ", 1)[-1].strip()
            for log in sorted(folder.glob("*.log"))
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
            if "[ERROR]" in line
        ]
        reason = errors[-1] if errors else "no metrics.json: it failed, was killed or is running"
        unfinished.append((folder, reason))
    return unfinished


def swept(runs: list[RunSummary]) -> list[str]:
    """Override keys whose values differ between runs: the parameters of the sweep."""
    keys = sorted({key for run in runs for key in run.overrides})
    return [key for key in keys if len({run.overrides.get(key) for run in runs}) > 1]


def find_baseline(runs: list[RunSummary], root: Path, name: str) -> RunSummary:
    """The run named `name`: its folder's path below `root` (or its folder name)."""
    matches = [run for run in runs if name in (str(run.path.relative_to(root)), run.path.name)]
    if len(matches) != 1:
        known = ", ".join(str(run.path.relative_to(root)) for run in runs)
        found = "matches several runs" if matches else "is not a run"
        raise UserInputError(f"--baseline {name!r} {found} below {root} (runs: {known})")
    return matches[0]


def table(
    runs: list[RunSummary],
    metric: str,
    baseline: RunSummary | None = None,
    alpha: float = 0.05,
) -> tuple[list[str], list[list[str]]]:
    """Header and rows (best `metric` first): run, swept parameters, metrics, sparsity, time.
    With a baseline, a metric whose paired t-test against it gives p < alpha is marked `*`."""
    if any(metric not in run.metrics for run in runs):
        raise UserInputError(f"--metric {metric!r} is not measured by every run")
    parameters = swept(runs)
    measures = list(runs[0].metrics)
    index_columns = [c for c in INDEX_COLUMNS if all(c in run.index for run in runs)]
    header = ["run", *parameters, *measures, *index_columns, "wall_seconds"]
    rows = []
    for run in sorted(runs, key=lambda r: -r.metrics[metric]):
        name = run.path.name + (" (baseline)" if run is baseline else "")
        rows.append(
            [
                name,
                *(run.overrides.get(p, "") for p in parameters),
                *(_cell(run, m, baseline, alpha) for m in measures),
                *(f"{run.index[c]:.1f}" for c in index_columns),
                "" if run.wall_seconds is None else f"{run.wall_seconds:.0f}",
            ]
        )
    return header, rows


def _cell(run: RunSummary, measure: str, baseline: RunSummary | None, alpha: float) -> str:
    text = f"{run.metrics.get(measure, float('nan')):.4f}"
    if baseline is None or run is baseline or not baseline.per_query:
        return text
    p_value = paired_t_test(baseline.per_query, run.per_query, measure)
    return text + ("*" if p_value < alpha else "")


def collection_table(
    runs: list[RunSummary], metric: str, baseline: RunSummary | None = None, alpha: float = 0.05
) -> tuple[list[str], list[list[str]]] | None:
    """Suite runs side by side: `metric` by collection (a row each) and run (a column each);
    with a suite baseline, a value whose paired t-test against it over that collection's
    queries gives p < alpha is marked `*`. None when no run is a suite run."""
    suites = [run for run in runs if run.collections]
    if not suites:
        return None
    names = list(dict.fromkeys(name for run in suites for name in run.collections))
    header = ["collection", *(run.path.name for run in suites)]
    split = {run.path: _per_collection(run) for run in suites}
    rows = []
    for name in names:
        cells = []
        for run in suites:
            value = run.collections.get(name, {}).get(metric)
            text = "" if value is None else f"{value:.4f}"
            if value is not None and baseline is not None and baseline.collections:
                if run is not baseline and name in baseline.collections:
                    base, other = split[baseline.path][name], split[run.path].get(name, {})
                    text += "*" if paired_t_test(base, other, metric) < alpha else ""
            cells.append(text)
        rows.append([name, *cells])
    return header, rows


def _per_collection(run: RunSummary) -> dict[str, dict[str, dict[str, float]]]:
    """A suite run's pooled per-query values (`<collection>/<query id>`) by collection: each
    key goes to the longest collection name it starts with."""
    split: dict[str, dict[str, dict[str, float]]] = {name: {} for name in run.collections}
    for key, values in run.per_query.items():
        owners = [name for name in run.collections if key.startswith(f"{name}/")]
        if owners:
            owner = max(owners, key=len)
            split[owner][key[len(owner) + 1 :]] = values
    return split


def write_report(root: Path, metric: str, baseline: str | None = None, alpha: float = 0.05) -> str:
    """Write report.md, report.csv (and the plots) into `root`; returns the markdown table."""
    runs = find_runs(root)
    reference = None if baseline is None else find_baseline(runs, root, baseline)
    header, rows = table(runs, metric, reference, alpha)
    text = markdown_table(header, rows)
    if reference is not None:
        text += (
            f"\n`*`: p < {alpha} in a paired t-test against {reference.path.name} over the "
            "per-query values (scipy.stats.ttest_rel).\n"
        )
    by_collection = collection_table(runs, metric, reference, alpha)
    if by_collection is not None:
        text += (
            f"\nSuite runs: their values above are means over collections (their `*`, a test "
            f"over the queries of all collections pooled); {metric} by collection"
            + (", `*` tested over each collection's queries" if reference is not None else "")
            + ":\n\n"
            + markdown_table(*by_collection)
        )
    sizes = size_points(runs)
    if sizes:
        text += (
            f"\n{metric} against bytes per document in the index (report_sizes.png); QAT: the "
            "precision the model was trained for (model.quantization):\n\n"
            + markdown_table(*size_table(sizes, metric))
        )
    left_out = unfinished_runs(root)
    if left_out:
        text += f"\nLeft out, {len(left_out)} runs without metrics:\n" + "".join(
            f"- {folder.relative_to(root)}: {reason}\n" for folder, reason in left_out
        )
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *rows])
    try:
        write_text(root / "report.md", text)
        write_text(root / "report.csv", buffer.getvalue())
        plot_sweep(runs, swept(runs), metric, root / "report.png")
        plot_training(runs, root / "report_training.png")
        if sizes:
            plot_sizes(sizes, metric, root / "report_sizes.png")
    except OSError as error:
        raise UserInputError(
            f"{root}: cannot write the report there ({error.strerror or error})"
        ) from None
    return text


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m xpretrieval report", description=__doc__)
    parser.add_argument("folder", type=Path, help="a multirun folder, or any folder of runs")
    parser.add_argument("--metric", default="nDCG@10", help="sort by this measure (nDCG@10)")
    parser.add_argument("--baseline", help="run (its folder below FOLDER) to test others against")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (0.05)")
    options = parser.parse_args(args)
    if not options.folder.is_dir():
        raise UserInputError(f"{options.folder} is not a folder")
    print(write_report(options.folder, options.metric, options.baseline, options.alpha), end="")
