"""Sweeps that outlive their launcher: the submitit launchers' presets run a sweep as jobs, and
a sweep stopped by SIGTERM (a pre-empted cluster job) and relaunched with the same command,
a fixed hydra.sweep.dir and resume=auto continues every run from its checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests import inprocess
from tests.conftest import ROOT, tiny_overrides
from tests.test_resume import losses

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the [slurm] extra")


SETTINGS = ("trainer.log_every=1", "trainer.checkpoint_every=3")


def sweep(model_dir, sweep_dir, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "xpretrieval",
        "train",
        "-m",
        *tiny_overrides(model_dir),
        *SETTINGS,
        f"hydra.sweep.dir={sweep_dir}",
        "resume=auto",
        "seed=0,1",
        *extra,
    ]


def test_a_sweep_stopped_by_sigterm_continues_every_run_when_relaunched(tiny_model_dir, tmp_path):
    steps = "trainer.max_steps=9"
    reference = tmp_path / "uninterrupted"  # each run of the sweep, uninterrupted, in-process
    for seed in (0, 1):
        overrides = [*tiny_overrides(tiny_model_dir), *SETTINGS, f"seed={seed}", steps]
        inprocess.train(overrides, reference / str(seed))

    stopped = tmp_path / "stopped"
    command = sweep(tiny_model_dir, stopped, steps)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = stopped / "0" / "checkpoints" / "step-0000003"
    deadline = time.monotonic() + 300
    while not first.is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert first.is_dir(), stderr.decode()[-3000:]
    assert not (stopped / "0" / "metrics.json").exists()

    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)  # the same command
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming from" in (stopped / "0" / "train.log").read_text()
    for run in ("0", "1"):
        assert losses(stopped / run) == losses(reference / run)
        ours = json.loads((stopped / run / "metrics.json").read_text())["aggregate"]
        assert ours == json.loads((reference / run / "metrics.json").read_text())["aggregate"]


def test_the_local_jobs_launcher_runs_a_sweep_as_submitit_jobs(tiny_model_dir, tmp_path):
    command = sweep(tiny_model_dir, tmp_path, "trainer.max_steps=2", "hydra/launcher=local_jobs")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for run in ("0", "1"):
        assert json.loads((tmp_path / run / "metrics.json").read_text())["aggregate"]
    assert (tmp_path / ".submitit").is_dir()  # they ran as submitit jobs
