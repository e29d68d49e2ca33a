"""A run's artefacts say only what was measured: the checkpoint the run names holds exactly the
weights its metrics were measured with, carries those metrics, and survives rotation; a card
reads metrics from the checkpoint it describes, never from the run."""

from __future__ import annotations

import json

import pytest

import xpretrieval
from tests.conftest import tiny_overrides
from xpretrieval.commands.push import locate, model_card
from xpretrieval.commands.train import run_train
from xpretrieval.evaluation.measures import Metrics
from xpretrieval.training import validation


def test_the_restored_best_step_is_the_named_checkpoint_with_its_metrics(
    tiny_model_dir, tmp_path, monkeypatch, capsys
):
    scripted = iter([0.9, 0.5, 0.4, 0.3])  # validation gets worse: step 1 is the best
    monkeypatch.setattr(
        validation, "compute_metrics", lambda *_: Metrics({"nDCG@10": next(scripted)}, {})
    )
    overrides = [
        *tiny_overrides(tiny_model_dir),
        "trainer.max_steps=3",
        "trainer.checkpoint_every=1",
        "trainer.keep_checkpoints=1",
        "validation.every=1",
        "validation.held_out_queries=2",
    ]
    run_train(xpretrieval.configure(overrides), tmp_path)
    best = tmp_path / "checkpoints" / "best-step-0000001"
    measured = json.loads((tmp_path / "metrics.json").read_text())
    assert measured["checkpoint"] == str(best)
    assert f"Trained model: {best}" in capsys.readouterr().out
    # step-0000001 itself was rotated away (keep_checkpoints=1); the best weights were not
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("step-")] == [
        "step-0000003"
    ]
    assert json.loads((best / "metrics.json").read_text())["aggregate"] == measured["aggregate"]
    last = tmp_path / "checkpoints" / "step-0000003"
    assert not (last / "metrics.json").exists()  # never measured: no metrics claimed
    assert locate(tmp_path) == (best, tmp_path)
    assert "## Results on" in str(model_card(best, tmp_path))
    assert "## Results on" not in str(model_card(last, tmp_path))


@pytest.mark.parametrize("validating", [False, True])
def test_the_last_checkpoint_carries_the_metrics_when_it_was_measured(
    tiny_model_dir, tmp_path, validating
):
    overrides = [*tiny_overrides(tiny_model_dir), "trainer.max_steps=2"]
    if validating:
        overrides += ["validation.every=1", "validation.held_out_queries=2"]
    run_train(xpretrieval.configure(overrides), tmp_path)
    measured = json.loads((tmp_path / "metrics.json").read_text())
    checkpoint = measured["checkpoint"]
    assert checkpoint.startswith(str(tmp_path / "checkpoints"))
    saved = json.loads(
        (tmp_path / "checkpoints" / checkpoint.rsplit("/", 1)[-1] / "metrics.json").read_text()
    )
    assert saved["aggregate"] == measured["aggregate"]
