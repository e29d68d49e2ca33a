"""`push`: the model card built from a real run directory, and one clear line offline."""

from __future__ import annotations

import os

import pytest

from tests import inprocess
from tests.conftest import ROOT
from tests.test_cli import cli, tiny_train


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    result = tiny_train(tiny_model_dir, f"hydra.run.dir={folder}")
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def test_the_card_names_the_model_its_metrics_and_the_command(run_dir, capsys):
    assert inprocess.main("push", str(run_dir), "someone/tiny", "--card-only") == 0
    card = capsys.readouterr().out
    assert card.startswith("---\n") and "library_name: sentence-transformers" in card
    assert "- xpretrieval" in card and "# Dense model trained with xpretrieval" in card
    assert "## Results on tiny_beir/test" in card and "| nDCG@10 |" in card
    assert "python -m xpretrieval train" in card and "trainer.max_steps=2" in card
    assert "## Training configuration" in card and "normalize: true" in card


def test_offline_the_push_fails_with_one_line(run_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = cli(
        "push", str(run_dir / "checkpoints" / "step-0000002"), "someone/tiny", cwd=ROOT, env=env
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: push someone/tiny: the Hugging Face Hub refused")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_missing_folder_is_named(tmp_path, capsys):
    assert inprocess.main("push", str(tmp_path / "nope"), "someone/tiny") == 2
    assert "nope: no such folder" in capsys.readouterr().err
