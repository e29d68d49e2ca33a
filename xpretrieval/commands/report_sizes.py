"""The report's size view: a metric against the bytes each document takes in the index, over a
sweep of dimensions x precisions (index=quantized), with and without quantisation-aware
training (model.quantization) — one point per run, one curve per precision and training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from xpretrieval.core.io import read_yaml
from xpretrieval.models.quantization import Quantization

if TYPE_CHECKING:
    from xpretrieval.commands.report import RunSummary

PRECISIONS = {q.bits: "float32" if q is Quantization.none else q.value for q in Quantization}


@dataclass(frozen=True)
class SizePoint:
    """One run's index size and settings, read from its metrics.json and config.yaml."""

    run: RunSummary
    bytes_per_document: float  # the codes searched (rescoring's full vectors apart)
    precision: str  # float32, int8 or binary
    dimensions: str  # searched dimensions ("" when the index does not say)
    trained_for: str  # the model's quantization in training: none (no QAT), int8, binary
    rescore: str  # none, quantized, or full (+ the full vectors' bytes per document)

    @property
    def curve(self) -> str:
        """The legend of the points that differ by dimensions only."""
        training = "no QAT" if self.trained_for == "none" else f"QAT {self.trained_for}"
        rescore = "" if self.rescore == "none" else f", rescore {self.rescore.split()[0]}"
        return f"{self.precision}, {training}{rescore}"


def size_points(runs: list[RunSummary]) -> list[SizePoint]:
    """The runs of `index=quantized` over whole documents, when they differ in bytes per
    document (a sweep of sizes); empty otherwise, so that other reports stay as they were.
    Other indexes (faiss's codes, say) record bytes per document without the precision the
    curves are drawn by, and a passage run's bytes are per passage: they are left out."""
    points = [
        _point(run)
        for run in runs
        if "bits_per_dimension" in run.index and "passages_searched_per_query" not in run.index
    ]
    return points if len({p.bytes_per_document for p in points}) > 1 else []


def _point(run: RunSummary) -> SizePoint:
    index = run.index
    config = read_yaml(run.path / "config.yaml")
    model, index_config = config.get("model") or {}, config.get("index") or {}
    rescore = str(index_config.get("rescore") or "none")
    if "rescore_bytes_per_document" in index:
        rescore += f" (+{index['rescore_bytes_per_document']:.0f} B)"
    dimensions = index.get("dimensions")
    return SizePoint(
        run=run,
        bytes_per_document=float(index["bytes_per_document"]),
        precision=PRECISIONS[int(index["bits_per_dimension"])],
        dimensions="" if dimensions is None else f"{dimensions:.0f}",
        trained_for=str(model.get("quantization") or "none"),
        rescore=rescore,
    )


def size_table(points: list[SizePoint], metric: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows, smallest index first (best `metric` first at equal size)."""
    header = [
        "run",
        "precision",
        "dimensions",
        "bytes/doc",
        "QAT",
        "rescore",
        metric,
    ]
    rows = [
        [
            point.run.path.name,
            point.precision,
            point.dimensions,
            f"{point.bytes_per_document:g}",
            point.trained_for,
            point.rescore,
            f"{point.run.metrics[metric]:.4f}",
        ]
        for point in sorted(points, key=lambda p: (p.bytes_per_document, -p.run.metrics[metric]))
    ]
    return header, rows
