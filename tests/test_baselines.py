"""The recorded baselines' fast checks: few steps on a 400-document SciFact test, pinned
values, so that a change shifting a baseline fails here (the full runs: experiments/). They
are marked `baseline`: `make test-baselines` runs every one; `make test-pinned` (and so CI)
the ones whose baseline.yaml keeps `fast_in_ci` true; `make test` none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, tiny_overrides
from xpretrieval.commands.baselines import BASELINE_FILE, Check, Outcome, load_baseline, run_check
from xpretrieval.core.errors import ConfigError

BASELINES = sorted(path.parent for path in (ROOT / "experiments").glob(f"*/{BASELINE_FILE}"))


def test_every_baseline_file_is_valid_and_has_a_readme():
    assert {path.name for path in BASELINES} >= {
        "bm25_scifact",
        "minilm_zero_shot_scifact",
        "dense_scifact",
    }
    for folder in BASELINES:
        load_baseline(folder)
        assert (folder / "README.md").is_file(), folder


def fast_checks() -> list:
    """Every baseline's fast check (marked `baseline`: `make test-baselines` runs them all);
    those not in `make test-pinned` are also marked slow."""
    return [
        pytest.param(
            folder,
            id=folder.name,
            marks=[pytest.mark.baseline]
            + ([] if load_baseline(folder).fast_in_ci else [pytest.mark.slow]),
        )
        for folder in BASELINES
    ]


@pytest.mark.shared_data
@pytest.mark.parametrize("folder", fast_checks())
def test_fast_check_reproduces_its_pinned_values(folder: Path, tmp_path):
    outcome = run_check(load_baseline(folder).fast, tmp_path)
    assert not outcome.failures


def test_a_check_builds_on_its_before_runs(tiny_model_dir, tmp_path):
    shrink = tiny_overrides(tiny_model_dir)
    evaluate = [o for o in shrink if not o.startswith("model.name_or_path=")]
    check = Check(
        before={"trained": ["train", *shrink]},
        command=["evaluate", *evaluate, "model.name_or_path={trained}/checkpoints/step-0000006"],
        expected={"nDCG@10": -1.0},  # unreachable: the failure reports what was measured
        tolerance=0.0,
    )
    outcome = run_check(check, tmp_path)
    # the evaluated checkpoint is the trained run's: the same metrics as its own evaluation
    own = json.loads((tmp_path / "trained" / "metrics.json").read_text())["aggregate"]
    assert outcome.measured == pytest.approx(own)
    assert outcome.failures == [f"nDCG@10: measured {own['nDCG@10']:.4f}, expected -1.0000 +/- 0.0"]


def test_an_outcome_outside_the_tolerance_fails():
    outcome = Outcome({"nDCG@10": 0.70}, {"nDCG@10": 0.72, "R@100": 0.9}, tolerance=0.01)
    assert outcome.failures == [
        "nDCG@10: measured 0.7000, expected 0.7200 +/- 0.01",
        "R@100: measured nan, expected 0.9000 +/- 0.01",
    ]


def test_a_malformed_baseline_file_names_itself(tmp_path):
    (tmp_path / BASELINE_FILE).write_text("full: {command: [fit], expected: {}, tolerance: 1}\n")
    with pytest.raises(ConfigError, match=f"{BASELINE_FILE}: .*command must start with train"):
        load_baseline(tmp_path)
