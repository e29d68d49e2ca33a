"""Experiment trackers for real, on their local stores: an MLflow file store and W&B offline
mode each receive the resolved config, the loss terms, learning rate and throughput, the
validation metrics and the final test metrics of a training run."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import ROOT, tiny_overrides
from tests.test_cli import cli

pytest.importorskip("mlflow", reason="mlflow is the optional [trackers] extra")
pytest.importorskip("wandb", reason="wandb is the optional [trackers] extra")


@pytest.fixture(scope="module")
def tracked_run(tiny_model_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tracked")
    uri = f"file:{run_dir / 'mlruns'}"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 asks to opt in to its file store
    result = cli(
        "train",
        *tiny_overrides(tiny_model_dir),
        "validation.every=3",
        "validation.held_out_queries=2",
        "logger.backends=[csv,wandb,mlflow]",
        f"logger.mlflow_tracking_uri={uri}",
        "logger.run_name=tiny",
        f"hydra.run.dir={run_dir}",
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, uri, json.loads((run_dir / "metrics.json").read_text())["aggregate"]


def test_mlflow_receives_config_training_validation_and_test_metrics(tracked_run, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    _, uri, aggregate = tracked_run
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("xpretrieval")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "tiny" and run.info.status == "FINISHED"
    assert run.data.params["model.name_or_path"].endswith("tiny-bert0")
    assert run.data.params["trainer.max_steps"] == "6"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss/total")]
    assert steps == [2, 4, 6]
    for name in ("learning_rate", "samples_per_second", "loss/rank", "validation/nDCG_10"):
        assert client.get_metric_history(run.info.run_id, name), name
    assert run.data.metrics["test/nDCG_10"] == pytest.approx(aggregate["nDCG@10"])


def test_wandb_offline_run_holds_the_same(tracked_run):
    from wandb.proto import wandb_internal_pb2 as records

    run_dir, _, aggregate = tracked_run
    (log,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data = log.read_bytes()

    def history_key(name: str) -> bytes:
        return records.HistoryItem(nested_key=[name]).SerializeToString()

    for name in ("loss/total", "learning_rate", "samples_per_second", "validation/nDCG@10"):
        assert history_key(name) in data, name
    summary = records.SummaryItem(key="test/nDCG@10", value_json=json.dumps(aggregate["nDCG@10"]))
    assert summary.SerializeToString() in data
    assert records.ConfigItem(key="seed", value_json="42").SerializeToString() in data
