"""Exact resumption: a run killed (SIGKILL) or stopped (SIGTERM) mid-training and resumed
gives the loss curve and metrics of the uninterrupted run, bit for bit, on CPU. The stopped
and resumed runs are the CLI's; the uninterrupted one runs in this process (the same code)."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import inprocess
from tests.conftest import ROOT, tiny_overrides
from xpretrieval.commands.resume import last_checkpoint, with_saved_overrides
from xpretrieval.core.errors import ConfigError

STEPS = 16  # checkpoints at steps 5, 10 and 15: a stop after the first leaves most to resume


def train_overrides(model_dir: Path, *extra: str) -> list[str]:
    return [
        *tiny_overrides(model_dir),
        f"trainer.max_steps={STEPS}",
        "trainer.checkpoint_every=5",
        "trainer.log_every=1",
        *extra,
    ]


def train_command(model_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "xpretrieval",
        "train",
        *train_overrides(model_dir),
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def losses(run_dir: Path) -> list[dict[str, str]]:
    """The logged rows without the timing columns, which differ between runs."""
    with (run_dir / "train_log.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    timing = {"elapsed_seconds", "samples_per_second"}
    return [{k: v for k, v in row.items() if k not in timing} for row in rows]


def stop_after_first_checkpoint(command: list[str], run_dir: Path, how: int) -> tuple[int, str]:
    """Start `command`, send it `how` once its first checkpoint is written; its exit status and
    its stderr."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = run_dir / "checkpoints" / "step-0000005"
    deadline = time.monotonic() + 300
    while not first.is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(how)
    _, stderr = process.communicate(timeout=300)
    assert first.is_dir(), stderr.decode()[-3000:]
    return process.returncode, stderr.decode()


# the fixture's validation nDCG does not improve after step 5: patience stops the run at step 15
VALIDATING = ("validation.every=5", "validation.held_out_queries=3", "validation.patience=2")


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tmp_path_factory):
    """The uninterrupted run of each set of extra overrides, run once, in this process."""
    runs: dict[tuple[str, ...], Path] = {}

    def run(extra: tuple[str, ...]) -> Path:
        if extra not in runs:
            run_dir = tmp_path_factory.mktemp("uninterrupted")
            inprocess.train(train_overrides(tiny_model_dir, *extra), run_dir)
            runs[extra] = run_dir
        return runs[extra]

    return run


@pytest.mark.parametrize(
    ("how", "extra"),
    [(signal.SIGKILL, ()), (signal.SIGTERM, ()), (signal.SIGKILL, VALIDATING)],
    ids=["SIGKILL", "SIGTERM", "SIGKILL-validating"],
)
def test_a_stopped_run_resumes_to_the_same_losses_and_metrics(
    tiny_model_dir, tmp_path, uninterrupted, how, extra
):
    reference = uninterrupted(extra)
    command = train_command(tiny_model_dir, tmp_path, *extra)
    returncode, stderr = stop_after_first_checkpoint(command, tmp_path, how)
    assert returncode in (-how, 128 + how)  # killed, or stopped after saving a checkpoint
    assert not (tmp_path / "metrics.json").exists()
    stopped_at = last_checkpoint(tmp_path)
    assert int(stopped_at.name.split("-")[1]) < STEPS
    if how == signal.SIGTERM:  # it saves a checkpoint at the step it stops, and says so
        assert returncode == 128 + signal.SIGTERM
        assert "stopped by SIGTERM after step" in stderr
        assert f"continue with: python -m xpretrieval train resume={tmp_path}" in stderr
        step = int(stderr.split("stopped by SIGTERM after step ")[1].split(";")[0])
        assert stopped_at.name == f"step-{step:07d}"
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "xpretrieval",
            "train",
            f"resume={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from {stopped_at}" in resumed.stderr
    assert f"Resuming from {stopped_at}" in (tmp_path / "train.log").read_text()  # its own log
    assert losses(tmp_path) == losses(reference)
    metrics = json.loads((tmp_path / "metrics.json").read_text())["aggregate"]
    assert metrics == json.loads((reference / "metrics.json").read_text())["aggregate"]
    if extra:  # validations, best weights and patience continue as if never interrupted
        validated = (tmp_path / "validation.csv").read_text()
        assert validated == (reference / "validation.csv").read_text()


def test_resume_needs_a_run_directory_with_a_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint under"):
        last_checkpoint(tmp_path)
    with pytest.raises(ConfigError, match="not a run directory"):
        with_saved_overrides("train", [f"resume={tmp_path}"])


def test_overrides_given_again_replace_the_saved_ones(tmp_path):
    (tmp_path / ".hydra").mkdir()
    saved = "- +experiment=splade\n- trainer.max_steps=10\n- seed=3\n"
    (tmp_path / ".hydra" / "overrides.yaml").write_text(saved)
    given = [f"resume={tmp_path}", "trainer.max_steps=20"]
    assert with_saved_overrides("train", given) == [
        "+experiment=splade",
        "seed=3",
        f"resume={tmp_path}",
        "trainer.max_steps=20",
    ]
