"""The report's size view: runs of a dimensions x precisions sweep (with and without QAT) in a
table of the metric against bytes per document, and its plot; reports of runs of one size stay
as they were."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from xpretrieval.commands.report import find_runs, write_report
from xpretrieval.commands.report_sizes import size_points, size_table


def sized_run(
    root: Path,
    name: str,
    ndcg: float,
    bits: int,
    dims: int,
    qat: str = "none",
    rescore: str = "none",
) -> None:
    """A run folder as index=quantized writes it: metrics.json and the resolved config.yaml."""
    folder = root / name
    folder.mkdir(parents=True)
    index = {
        "documents": 20,
        "bytes_per_document": dims * bits / 8,
        "dimensions": dims,
        "bits_per_dimension": bits,
    }
    if rescore == "full":
        index["rescore_bytes_per_document"] = 4 * 384
    metrics = {"aggregate": {"nDCG@10": ndcg}, "index": index, "per_query": {}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    config = {"model": {"quantization": qat}, "index": {"quantization": qat, "rescore": rescore}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))


def test_size_table_and_plot_from_a_sweep(tmp_path):
    sized_run(tmp_path, "fp32-384", 0.64, 32, 384)
    sized_run(tmp_path, "int8-384", 0.63, 8, 384)
    sized_run(tmp_path, "binary-384", 0.55, 1, 384)
    sized_run(tmp_path, "binary-384-full", 0.62, 1, 384, rescore="full")
    sized_run(tmp_path, "binary-384-qat", 0.60, 1, 384, qat="binary")
    sized_run(tmp_path, "binary-128-qat", 0.50, 1, 128, qat="binary")
    header, rows = size_table(size_points(find_runs(tmp_path)), "nDCG@10")
    assert header == ["run", "precision", "dimensions", "bytes/doc", "QAT", "rescore", "nDCG@10"]
    assert rows[0] == ["binary-128-qat", "binary", "128", "16", "binary", "none", "0.5000"]
    assert [row[0] for row in rows[1:4]] == ["binary-384-full", "binary-384-qat", "binary-384"]
    assert rows[1][5] == "full (+1536 B)"
    assert rows[-2][:4] == ["int8-384", "int8", "384", "384"]
    assert rows[-1][:4] == ["fp32-384", "float32", "384", "1536"]
    text = write_report(tmp_path, "nDCG@10")
    assert "nDCG@10 against bytes per document" in text
    assert "| binary-128-qat | binary | 128 | 16 | binary | none | 0.5000 |" in text
    assert (tmp_path / "report_sizes.png").stat().st_size > 0


def test_runs_of_one_size_have_no_size_view(tmp_path):
    sized_run(tmp_path, "a", 0.60, 32, 384)
    sized_run(tmp_path, "b", 0.61, 32, 384)
    assert size_points(find_runs(tmp_path)) == []
    assert "bytes per document" not in write_report(tmp_path, "nDCG@10")
    assert not (tmp_path / "report_sizes.png").exists()


def test_runs_of_other_indexes_and_of_passages_stay_off_the_curves(tmp_path):
    """faiss records its codes' bytes without a precision, a passage run bytes per passage: a
    PQ48 run must not sit on the float32 curve, nor a passage run on any."""
    sized_run(tmp_path, "fp32-384", 0.64, 32, 384)
    sized_run(tmp_path, "binary-384", 0.55, 1, 384)
    sized_run(tmp_path, "passages-binary", 0.58, 1, 384)
    metrics_file = tmp_path / "passages-binary" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics["index"]["passages_searched_per_query"] = 30.0
    metrics_file.write_text(json.dumps(metrics))
    faiss = tmp_path / "faiss-pq48"
    faiss.mkdir()
    index = {"documents": 20, "bytes_per_document": 48}
    metrics = {"aggregate": {"nDCG@10": 0.5}, "index": index, "per_query": {}}
    (faiss / "metrics.json").write_text(json.dumps(metrics))
    names = {point.run.path.name for point in size_points(find_runs(tmp_path))}
    assert names == {"fp32-384", "binary-384"}
