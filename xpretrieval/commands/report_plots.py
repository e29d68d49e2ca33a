"""The report's figures: a metric against the swept parameter or the index's bytes per
document, and the training curves."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpretrieval.core.io import atomic_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from xpretrieval.commands.report import RunSummary
    from xpretrieval.commands.report_sizes import SizePoint


def plot_sweep(runs: list[RunSummary], parameters: list[str], metric: str, path: Path) -> bool:
    """PNG of `metric` (and documents' active dimensions, when known) against the one numeric
    swept parameter; False when the sweep has no single numeric parameter."""
    if len(parameters) != 1:
        return False
    try:
        points = sorted((float(run.overrides[parameters[0]]), run) for run in runs)
    except (KeyError, ValueError):
        return False
    plt = _pyplot()
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
    _save(figure, path)
    return True


def plot_sizes(points: list[SizePoint], metric: str, path: Path) -> None:
    """PNG of `metric` against bytes per document (log scale), a curve per precision and
    training (solid: quantisation-aware, dashed: not), its points the dimensions searched."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    curves: dict[str, list[SizePoint]] = {}
    for point in sorted(points, key=lambda p: p.bytes_per_document):
        curves.setdefault(point.curve, []).append(point)
    markers = {"float32": "o", "int8": "s", "binary": "^"}
    for name, curve in sorted(curves.items()):
        xs = [p.bytes_per_document for p in curve]
        style = "--" if curve[0].trained_for == "none" else "-"
        marker = markers.get(curve[0].precision, "o")
        axis.plot(xs, [p.run.metrics[metric] for p in curve], style, marker=marker, label=name)
        for point in curve:
            if point.dimensions:
                xy = (point.bytes_per_document, point.run.metrics[metric])
                axis.annotate(point.dimensions, xy, fontsize="x-small", alpha=0.7)
    axis.set_xscale("log", base=2)
    axis.set(xlabel="bytes per document", ylabel=metric, title=f"{metric} against index size")
    axis.legend(fontsize="small")
    _save(figure, path)


def plot_training(runs: list[RunSummary], path: Path) -> bool:
    """PNG of each run's total training loss per step and, where the run validated, its
    validation metric per step; False when no run has a training log."""
    curves = [(run, _columns(run.path / "train_log.csv")) for run in runs]
    curves = [(run, log) for run, log in curves if log and "loss/total" in log]
    if not curves:
        return False
    validations = [(run, _columns(run.path / "validation.csv")) for run, _ in curves]
    validations = [(run, log) for run, log in validations if log]
    plt = _pyplot()
    panels = 2 if validations else 1
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    for run, log in curves:
        axes[0][0].plot(log["step"], log["loss/total"], label=run.path.name)
    axes[0][0].set(xlabel="step", ylabel="training loss (total)", title="Training loss")
    axes[0][0].legend(fontsize="small")
    if validations:
        for run, log in validations:
            metric = next(name for name in log if name != "step")
            axes[0][1].plot(log["step"], log[metric], "o-", label=run.path.name)
            axes[0][1].set(xlabel="step", ylabel=metric, title=f"Validation {metric}")
        axes[0][1].legend(fontsize="small")
    _save(figure, path)
    return True


def _columns(path: Path) -> dict[str, list[float]]:
    """A numeric CSV file as columns (empty when the file does not exist)."""
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    return {name: [float(row[name]) for row in rows if row[name] != ""] for name in rows[0]}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    with atomic_file(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=120)
    _pyplot().close(figure)
