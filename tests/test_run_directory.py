"""A run directory through the CLI: a refused run leaves it untouched; a resume may change only
the run's length and its logging, checkpointing and evaluation, logs into the run's own
train.log, keeps its overrides for the next resume, and refuses a damaged checkpoint. (The runs
whose command line is not the point run in this process, through the code the CLI runs.)"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from tests import inprocess
from tests.test_cli import cli, tiny_train
from xpretrieval.core.errors import ConfigError
from xpretrieval.core.hooks import TrainState
from xpretrieval.training.checkpoint import Checkpointer


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below `folder`: its bytes and modification time."""
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_an_unwritable_output_folder_is_one_line(tiny_model_dir, tmp_path):
    (tmp_path / "a-file").write_text("")
    result = tiny_train(tiny_model_dir, f"hydra.run.dir={tmp_path / 'a-file' / 'run'}")
    assert result.returncode == 2
    assert "hydra.run.dir=" in result.stderr and "cannot write under" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_refused_run_leaves_the_folder_untouched_and_resume_changes_only_what_it_may(
    tiny_model_dir, tmp_path, caplog
):
    run_dir, cwd = tmp_path / "run", tmp_path / "elsewhere"
    cwd.mkdir()
    first = tiny_train(tiny_model_dir, f"hydra.run.dir={run_dir}", cwd=cwd)
    assert first.returncode == 0, first.stderr[-3000:]

    before = snapshot(run_dir)  # a run refused there leaves the finished one untouched
    assert ".hydra/overrides.yaml" in before
    again_there = tiny_train(
        tiny_model_dir, "optimizer.lr=1e-3", f"hydra.run.dir={run_dir}", cwd=cwd
    )
    assert again_there.returncode == 2
    assert f"error: {run_dir} already holds a run" in again_there.stderr
    assert snapshot(run_dir) == before

    with pytest.raises(ConfigError, match="optimizer.lr: a resumed run cannot change it"):
        inprocess.train([f"resume={run_dir}", "optimizer.lr=1e-3"], run_dir)

    longer = cli("train", f"resume={run_dir}", "trainer.max_steps=4", cwd=cwd)
    assert longer.returncode == 0, longer.stderr[-3000:]
    saved = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    assert "trainer.max_steps=4" in saved and not any(o.startswith("resume=") for o in saved)
    assert "Resuming from" in (run_dir / "train.log").read_text()
    assert not (cwd / "outputs").exists()  # no stray folder for the resumed run's log

    caplog.set_level(logging.INFO)
    inprocess.train([f"resume={run_dir}", "trainer.log_every=1"], run_dir)
    assert f"Resuming from {run_dir / 'checkpoints' / 'step-0000004'}" in caplog.text
    assert (run_dir / "checkpoints" / "step-0000004").is_dir()  # max_steps=4 was kept

    (run_dir / "checkpoints" / "step-0000004" / "training_state.pt").write_bytes(b"\x80\x02")
    with pytest.raises(ConfigError, match="training_state.pt cannot be read"):
        inprocess.train([f"resume={run_dir}", "trainer.max_steps=6"], run_dir)


def test_checkpoints_are_written_by_elapsed_time_too(tmp_path):
    saved: list[str] = []
    checkpointer = Checkpointer(
        tmp_path, every=0, keep=5, save=lambda p: saved.append(p.name), minutes=1e-9
    )
    checkpointer.on_train_start(TrainState(step=0, max_steps=3, epoch=0.0))
    for step in (1, 2):
        checkpointer.on_step_end(TrainState(step=step, max_steps=3, epoch=0.0))
    assert len(saved) == 2
    untimed = Checkpointer(tmp_path / "u", every=0, keep=5, save=lambda p: saved.append(p.name))
    untimed.on_step_end(TrainState(step=1, max_steps=3, epoch=0.0))
    assert len(saved) == 2


def test_a_run_folder_named_with_non_ascii_characters_trains_and_resumes(tiny_model_dir, tmp_path):
    """Hydra's lexer reads no bare non-ASCII text: the CLI quotes such values for it."""
    run_dir = tmp_path / "expériences" / "run"
    first = tiny_train(tiny_model_dir, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = cli("train", f"resume={run_dir}", "trainer.max_steps=4", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (run_dir / "checkpoints" / "step-0000004").is_dir()
