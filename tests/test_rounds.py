"""Hard-negative rounds: round k mines the training queries with round k - 1's model and trains
from it on that ranking's negatives; every round keeps a run directory that resumes alone."""

from __future__ import annotations

import json

import pytest
import yaml

import xpretrieval
from tests.conftest import tiny_overrides
from xpretrieval.core.errors import ConfigError


def test_two_rounds_mine_with_the_first_model_and_train_from_it(tiny_model_dir, tmp_path):
    overrides = [*tiny_overrides(tiny_model_dir), "trainer.max_steps=2", "rounds=2"]
    overrides += ["sampler.hard_negatives.top_k=8", "sampler.hard_negatives.skip_top=1"]
    metrics = xpretrieval.train_from_overrides(overrides, tmp_path)
    table = json.loads((tmp_path / "rounds.json").read_text())
    assert [row["round"] for row in table] == [1, 2] and table[1]["nDCG@10"] == metrics["nDCG@10"]
    final = json.loads((tmp_path / "metrics.json").read_text())["aggregate"]
    assert final == json.loads((tmp_path / "round-2" / "metrics.json").read_text())["aggregate"]
    first_model = tmp_path / "round-1" / "checkpoints" / "step-0000002"
    mined = tmp_path / "round-1" / "mine" / "run.trec"
    assert mined.is_file() and first_model.is_dir()
    second = yaml.safe_load((tmp_path / "round-2" / "config.yaml").read_text())
    assert second["model"]["name_or_path"] == str(first_model)
    assert second["sampler"]["hard_negatives"]["run_file"] == str(mined)
    assert second["rounds"] == 1  # each round's directory is a single run, resumable alone
    saved = (tmp_path / "round-2" / ".hydra" / "overrides.yaml").read_text()
    assert f"model.name_or_path={first_model}" in saved and "rounds=1" in saved
    assert (tmp_path / "round-2" / "checkpoints" / "step-0000002").is_dir()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["rounds=2"], "rounds=2: later rounds draw hard negatives .*sampler.hard_negatives.top_k"),
        (["rounds=0"], "rounds must be >= 1"),
    ],
)
def test_rounds_that_cannot_work_are_refused(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        xpretrieval.train(xpretrieval.configure(overrides), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_interrupted_rounds_run_resumes_as_a_rounds_run(tiny_model_dir, tmp_path):
    """Killed while round 2 was being evaluated: `resume=<rounds run>` keeps round 1 and its
    mining pass as they are and continues round 2 from its checkpoint."""
    overrides = [*tiny_overrides(tiny_model_dir), "rounds=2", "sampler.hard_negatives.top_k=8"]
    overrides += ["trainer.max_steps=1", "trainer.checkpoint_every=1"]
    xpretrieval.train_from_overrides(overrides, tmp_path)
    for killed in ("round-2/metrics.json", "round-2/run.trec", "metrics.json", "rounds.json"):
        (tmp_path / killed).unlink()
    kept = {
        path: path.stat().st_mtime_ns
        for folder in ("round-1", "round-1/mine")
        for path in (tmp_path / folder).glob("*.*")
    }
    resumed = [f"resume={tmp_path}", "trainer.max_steps=2"]
    metrics = xpretrieval.train_from_overrides(resumed, tmp_path)
    assert {path: path.stat().st_mtime_ns for path in kept} == kept
    assert (tmp_path / "round-2" / "checkpoints" / "step-0000002").is_dir()
    table = json.loads((tmp_path / "rounds.json").read_text())
    assert [row["round"] for row in table] == [1, 2] and table[1]["nDCG@10"] == metrics["nDCG@10"]
    with pytest.raises(ConfigError, match=r"optimizer\.lr: a resumed run cannot change it"):
        xpretrieval.configure([f"resume={tmp_path}", "optimizer.lr=1"])
