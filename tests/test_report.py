"""The report: runs found, swept parameters as columns, sorted by a metric, plotted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import inprocess
from tests.conftest import ROOT, tiny_overrides
from tests.test_cli import cli
from xpretrieval.commands.report import find_runs, swept, table, write_report
from xpretrieval.core.errors import UserInputError
from xpretrieval.evaluation.measures import paired_t_test


def fake_run(
    root: Path, name: str, overrides: list[str], ndcg: float, active: float, shift: float = 0.0
) -> None:
    """A run folder: its overrides, metrics (8 queries, per-query nDCG@10 about base + shift),
    a training log and a validation log."""
    folder = root / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    metrics = {"aggregate": {"nDCG@10": ndcg, "AP": ndcg / 2}, "wall_seconds": 12.0}
    metrics["index"] = {"doc_active_dims": active, "query_active_dims": 9.0, "postings": 1}
    metrics["per_query"] = {
        f"q{i}": {"nDCG@10": base + shift * (1 + i % 3 / 10), "AP": base / 2}
        for i, base in enumerate(PER_QUERY)
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "train_log.csv").write_text("step,loss/total\n1,2.0\n2,1.5\n")
    (folder / "validation.csv").write_text("step,nDCG@10\n2,0.4\n")


PER_QUERY = [0.1, 0.5, 0.3, 0.9, 0.2, 0.7, 0.4, 0.6]


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    for name, weight, ndcg, active in (("0", "1e-4", 0.61, 300.0), ("1", "1e-3", 0.65, 120.0)):
        fake_run(
            tmp_path,
            name,
            ["+experiment=splade", f"losses.flops.doc_weight={weight}"],
            ndcg,
            active,
        )
    return tmp_path


def test_table_has_the_swept_parameter_and_the_best_run_first(sweep):
    runs = find_runs(sweep)
    assert swept(runs) == ["losses.flops.doc_weight"]  # +experiment is the same in both
    header, rows = table(runs, "nDCG@10")
    assert header == [
        "run",
        "losses.flops.doc_weight",
        "nDCG@10",
        "AP",
        "query_active_dims",
        "doc_active_dims",
        "wall_seconds",
    ]
    assert rows[0][:3] == ["1", "1e-3", "0.6500"] and rows[1][:3] == ["0", "1e-4", "0.6100"]


def test_report_files_are_written(sweep):
    text = write_report(sweep, "nDCG@10")
    assert (sweep / "report.md").read_text() == text
    assert (sweep / "report.csv").read_text().splitlines()[1].startswith("1,1e-3,0.6500")
    for figure in ("report.png", "report_training.png"):
        assert (sweep / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paired_t_test_matches_hand_computation():
    # differences 1, 1, 1, 2: mean 1.25, sd 0.5, t = 1.25 / (0.5 / 2) = 5 with 3 degrees of
    # freedom, two-sided p = 0.01539
    a = {q: {"m": v} for q, v in zip("abcd", [1.0, 2.0, 3.0, 4.0], strict=True)}
    b = {q: {"m": v} for q, v in zip("abcd", [2.0, 3.0, 4.0, 6.0], strict=True)}
    assert paired_t_test(a, b, "m") == pytest.approx(0.01539, abs=1e-5)
    assert paired_t_test(a, {"a": {"m": 1.0}}, "m") == paired_t_test(
        a, {**a, "b": {"m": 0.0}, "c": {"m": 0.0}, "d": {"m": 0.0}}, "m"
    )


def test_runs_significantly_different_from_the_baseline_are_marked(tmp_path):
    fake_run(tmp_path, "base", ["seed=1"], 0.46, 10.0)
    fake_run(tmp_path, "better", ["seed=2"], 0.56, 10.0, shift=0.1)  # +0.10 to +0.12 per query
    fake_run(tmp_path, "same", ["seed=3"], 0.46, 10.0)
    text = write_report(tmp_path, "nDCG@10", baseline="base")
    lines = text.splitlines()
    assert lines[2].startswith("| better | 2 | 0.5600* | 0.2800 |")  # AP is unchanged
    assert "| base (baseline) | 1 | 0.4600 |" in text and "| same | 3 | 0.4600 |" in text
    assert "paired t-test against base" in text
    with pytest.raises(UserInputError, match="--baseline 'nope' is not a run below"):
        write_report(tmp_path, "nDCG@10", baseline="nope")


def test_no_plot_without_a_single_numeric_parameter(tmp_path):
    fake_run(tmp_path, "a", ["model=dense"], 0.5, 10.0)
    fake_run(tmp_path, "b", ["model=splade"], 0.6, 10.0)
    write_report(tmp_path, "nDCG@10")
    assert (tmp_path / "report.md").is_file() and not (tmp_path / "report.png").exists()


def test_bad_input_is_a_clear_error(tmp_path, sweep):
    with pytest.raises(UserInputError, match="no run below it has a metrics.json"):
        find_runs(tmp_path / "0" / ".hydra")
    with pytest.raises(UserInputError, match="'P@5' is not measured by every run"):
        table(find_runs(sweep), "P@5")


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_multirun_then_report_through_the_cli(tiny_model_dir, tmp_path, launcher, capsys):
    overrides = [o for o in tiny_overrides(tiny_model_dir) if not o.startswith("trainer.max")]
    if launcher == "joblib":  # parallel local runs
        overrides += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    result = cli(
        "train",
        "-m",
        *overrides,
        "trainer.max_steps=2",
        "losses.rank.scale=1,20",
        f"hydra.sweep.dir={tmp_path}",
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.parent.name for p in tmp_path.glob("*/metrics.json")) == ["0", "1"]
    capsys.readouterr()
    assert inprocess.main("report", str(tmp_path)) == 0  # the report command, in this process
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| run | losses.rank.scale | nDCG@10 |") and len(lines) == 4
    assert (tmp_path / "report.png").is_file() and (tmp_path / "report_training.png").is_file()


def test_runs_without_metrics_are_named_with_their_error(sweep):
    crashed = sweep / "2"
    (crashed / ".hydra").mkdir(parents=True)
    (crashed / "train.log").write_text(
        "[2026-01-01 00:00:00,000][xpretrieval][INFO] - Loading\n"
        "[2026-01-01 00:00:01,000][xpretrieval][ERROR] - device='cuda' but CUDA is not available\n"
    )
    (sweep / "3").mkdir()
    (sweep / "3" / "train.log").write_text("")
    text = write_report(sweep, "nDCG@10")
    assert "Left out, 2 runs without metrics:" in text
    assert "- 2: device='cuda' but CUDA is not available" in text
    assert "- 3: no metrics.json: it failed, was killed or is running" in text


def test_a_truncated_metrics_file_or_an_unwritable_folder_is_a_clear_error(sweep, monkeypatch):
    (sweep / "1" / "metrics.json").write_text('{"aggregate": {"nDCG@10": 0.')
    with pytest.raises(UserInputError, match=r"1/metrics.json: not complete JSON"):
        find_runs(sweep)
    (sweep / "1" / "metrics.json").write_text('{"index": {}}')
    with pytest.raises(UserInputError, match=r"1/metrics.json: expected an object with an"):
        find_runs(sweep)
    (sweep / "1").rename(sweep / "one-aside")
    (sweep / "one-aside" / "metrics.json").unlink()

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("xpretrieval.commands.report.write_text", read_only)
    with pytest.raises(UserInputError, match="cannot write the report there \\(Read-only file"):
        write_report(sweep, "nDCG@10")


def test_a_rounds_run_reports_its_rounds_once_and_no_mining_pass_or_checkpoint(tmp_path):
    """Only the rounds' trainings are runs: not the mining passes (rankings of training
    queries), the top folder's copy of the last round, nor a checkpoint's own metrics."""
    metrics = json.dumps({"aggregate": {"nDCG@10": 0.5}})
    (tmp_path / "rounds.json").write_text("[]")
    (tmp_path / "metrics.json").write_text(metrics)
    for k in (1, 2):
        round_dir = tmp_path / f"round-{k}"
        for folder, command in ((round_dir, "train"), (round_dir / "mine", "mine")):
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(metrics)
            (folder / "environment.json").write_text(json.dumps({"run": command}))
        (round_dir / "checkpoints" / "step-0000002").mkdir(parents=True)
        (round_dir / "checkpoints" / "step-0000002" / "metrics.json").write_text(metrics)
    assert [run.path.name for run in find_runs(tmp_path)] == ["round-1", "round-2"]
