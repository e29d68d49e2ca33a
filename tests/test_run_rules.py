"""The rules about a run hold for the Python API as for the command line: they live in the
commands, so a resume built in Python is checked against the run's saved config, and an
evaluation never writes into a training run's folder."""

from __future__ import annotations

from dataclasses import replace

import pytest

import xpretrieval
from tests.conftest import tiny_overrides
from xpretrieval.commands.evaluate import run_evaluate
from xpretrieval.core.errors import ConfigError, RunDirectoryRefused


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    """A finished two-step training run of the tiny model, trained through the Python API."""
    run_dir = tmp_path_factory.mktemp("trained")
    overrides = [*tiny_overrides(tiny_model_dir), "trainer.max_steps=2"]
    xpretrieval.train_from_overrides(overrides, run_dir)
    return run_dir, overrides


def test_an_api_resume_with_another_learning_rate_is_refused(trained_run):
    run_dir, overrides = trained_run
    experiment = xpretrieval.configure(overrides)
    changed = replace(experiment, resume=str(run_dir))
    changed = replace(changed, optimizer=replace(changed.optimizer, lr=1e-3))
    before = (run_dir / "metrics.json").read_bytes()
    with pytest.raises(ConfigError, match=r"optimizer\.lr: a resumed run cannot change it"):
        xpretrieval.train(changed, run_dir)
    assert (run_dir / "metrics.json").read_bytes() == before


def test_configure_applies_the_resume_rules_and_the_runs_own_overrides(trained_run):
    run_dir, _ = trained_run
    with pytest.raises(ConfigError, match=r"optimizer\.lr: a resumed run cannot change it"):
        xpretrieval.configure([f"resume={run_dir}", "optimizer.lr=1e-3"])
    longer = xpretrieval.configure([f"resume={run_dir}", "trainer.max_steps=3"])
    assert longer.trainer.max_steps == 3 and longer.batcher.batch_size == 4  # the run's own


def test_an_evaluation_resumed_in_a_training_run_is_refused_and_changes_nothing(
    trained_run, tiny_model_dir
):
    run_dir, _ = trained_run
    files = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    overrides = [*tiny_overrides(tiny_model_dir), f"resume={run_dir}"]
    experiment = xpretrieval.configure(overrides, "evaluate")
    with pytest.raises(RunDirectoryRefused, match="holds a `train` run"):
        run_evaluate(experiment, run_dir)
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == files


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: setattr(e.trainer, "max_steps", 0), r"trainer\.max_steps must be >= 1"),
        (lambda e: setattr(e.evaluation, "top_k", 0), r"evaluation\.top_k must be >= 1"),
        (lambda e: setattr(e.optimizer, "lr", float("inf")), r"optimizer\.lr must be > 0"),
    ],
)
def test_a_setting_changed_on_a_built_experiment_is_checked_again(
    change, message, tiny_model_dir, tmp_path
):
    experiment = xpretrieval.configure(tiny_overrides(tiny_model_dir))
    change(experiment)  # dataclasses are mutable: __post_init__ does not see this
    with pytest.raises(ConfigError, match=message):
        xpretrieval.train(experiment, tmp_path / "run")
    assert not (tmp_path / "run").exists()
