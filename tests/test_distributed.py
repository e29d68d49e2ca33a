"""Two Gloo processes on the CPU train as one process on the same global batch: the same loss
at every step and the same final weights (to 1e-5), with cross-device negatives (several
negatives per query, micro-batches, SPLADE's FLOPS over the global batch) and without them
(each process its share of the records, gradients averaged)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from tests.conftest import ROOT, TINY_BEIR, tiny_overrides
from tests.test_resume import losses
from xpretrieval.core.distributed import World
from xpretrieval.core.hooks import Hook, TrainState
from xpretrieval.data.collection import Collection
from xpretrieval.losses import Flops, InfoNCE
from xpretrieval.models import Dense, Splade
from xpretrieval.samplers import BatchwiseSampler
from xpretrieval.training import AdamW, BatchwiseTrainer, Learner
from xpretrieval.training.batchers import FixedBatcher, MicroBatcher

STEPS = 3


class LossRecorder(Hook):
    def __init__(self) -> None:
        self.totals: list[float] = []

    def on_step_end(self, state: TrainState) -> None:
        self.totals.append(float(state.losses["total"]))


def train(setting: dict, model_dir: str) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Train the tiny model for STEPS steps of one global batch of 6 queries with 2 negatives
    each (dropout off, so that processes and a single process draw nothing different)."""
    torch.set_num_threads(1)
    if setting["kind"] == "splade":
        model = Splade(name_or_path=model_dir).build()
        losses = {"rank": InfoNCE(scale=1.0), "flops": Flops(warmup_steps=0)}
    else:
        model = Dense(name_or_path=model_dir).build()
        losses = {"rank": InfoNCE(in_batch_negatives=setting["in_batch"])}
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    micro = setting.get("micro")
    learner = Learner(
        model=model,
        collection=Collection.from_beir(TINY_BEIR, "train"),
        sampler=BatchwiseSampler(negatives=2),
        batcher=FixedBatcher(6) if micro is None else MicroBatcher(6, micro=micro),
        trainer=BatchwiseTrainer(
            max_steps=STEPS, log_every=1, cross_device_negatives=setting["cross_device"]
        ),
        losses=losses,
        optimizer=AdamW(lr=1e-3, warmup_steps=0),
        seed=0,
    )
    recorder = LossRecorder()
    learner.fit([recorder])
    return recorder.totals, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _process(rank: int, world: int, store: str, runs: dict[str, tuple[dict, str]], out: str):
    """Train each of `runs` (name -> setting, model folder) in turn, in one process group."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        for name, (setting, model_dir) in runs.items():
            totals, weights = train(setting, model_dir)
            result = {"totals": totals, "weights": weights}
            torch.save(result, Path(out) / f"{name}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def train_on_two_processes(runs: dict[str, tuple[dict, str]], tmp_path: Path) -> dict[str, list]:
    """Each run's results on both ranks, by name: the runs share one pair of processes (their
    start is most of a run's time)."""
    mp.spawn(_process, args=(2, str(tmp_path / "store"), runs, str(tmp_path)), nprocs=2)
    return {
        name: [torch.load(tmp_path / f"{name}-rank{r}.pt", weights_only=True) for r in range(2)]
        for name in runs
    }


SETTINGS = {
    "cross-device negatives": {"kind": "dense", "in_batch": True, "cross_device": True},
    "cross-device, micro-batches": {
        "kind": "dense",
        "in_batch": True,
        "cross_device": True,
        "micro": 4,
    },
    "without cross-device negatives": {
        "kind": "dense",
        "in_batch": False,
        "cross_device": False,
    },
    "splade with flops, cross-device": {"kind": "splade", "cross_device": True},
}


@pytest.fixture(scope="module")
def on_two_processes(tiny_model_dir, masked_lm_dir, tmp_path_factory) -> dict[str, list]:
    """Every setting trained on two processes: name -> both ranks' losses and weights."""
    runs = {
        name: (setting, model_folder(setting, tiny_model_dir, masked_lm_dir))
        for name, setting in SETTINGS.items()
    }
    return train_on_two_processes(runs, tmp_path_factory.mktemp("two-processes"))


def model_folder(setting: dict, tiny_model_dir: Path, masked_lm_dir: Path) -> str:
    return str(masked_lm_dir if setting["kind"] == "splade" else tiny_model_dir)


@pytest.mark.xdist_group("two_processes")  # one worker starts the processes once for all
@pytest.mark.parametrize("name", list(SETTINGS))
def test_two_processes_train_as_one_on_the_global_batch(
    name, on_two_processes, tiny_model_dir, masked_lm_dir
):
    setting = SETTINGS[name]
    alone = {k: v for k, v in setting.items() if k != "micro"}  # one pass, for reference
    totals, weights = train(alone, model_folder(setting, tiny_model_dir, masked_lm_dir))
    for rank in on_two_processes[name]:
        assert rank["totals"] == pytest.approx(totals, abs=1e-5)
        for key, value in weights.items():
            torch.testing.assert_close(rank["weights"][key], value, atol=1e-5, rtol=0)
    assert json.dumps(totals) != json.dumps([totals[0]] * STEPS), "the model must have learnt"


def test_shares_cover_the_items_in_order_and_differ_by_at_most_one():
    items = list(range(7))
    shares = [list(World(rank, 3).shard(items)) for rank in range(3)]
    assert shares == [[0, 1, 2], [3, 4], [5, 6]]
    assert list(World().shard(items)) == items


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


STOPPABLE = ["trainer.max_steps=12", "trainer.checkpoint_every=3", "trainer.log_every=1"]


def torchrun_train(model_dir: Path, *extra: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [*TORCHRUN, "-m", "xpretrieval", "train", *tiny_overrides(model_dir), *STOPPABLE]
    return subprocess.run([*command, *extra], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def torchrun_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A run of `train` under torchrun with two processes, run from a folder of its own."""
    cwd = tmp_path_factory.mktemp("torchrun")
    run_dir = cwd / "runs" / "plain"
    result = torchrun_train(tiny_model_dir, f"hydra.run.dir={run_dir}", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Trained model:") == 1
    return run_dir


@pytest.mark.xdist_group("torchrun_run")  # one worker runs the shared run once
def test_torchrun_trains_with_two_processes_and_one_run_directory(
    torchrun_run, tiny_model_dir, tmp_path
):
    """The main process alone writes the run (one directory, its log, checkpoints, metrics);
    every process trained (the environment records two). With evaluation.shard_size, both
    processes encode shards of the test documents, and the metrics are the same."""
    sharded = tmp_path / "runs" / "sharded"
    result = torchrun_train(
        tiny_model_dir, "evaluation.shard_size=6", f"hydra.run.dir={sharded}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Trained model:") == 1
    for run_dir in (torchrun_run, sharded):
        assert json.loads((run_dir / "environment.json").read_text())["processes"] == 2
        assert sorted(p.name for p in run_dir.parents[1].iterdir()) == ["runs"]  # no others'
    assert len(list((sharded / "encoded").glob("shard-*.pt"))) == 4
    metrics = {
        p.name: json.loads((p / "metrics.json").read_text())["aggregate"]
        for p in (torchrun_run, sharded)
    }
    assert metrics["sharded"] == pytest.approx(metrics["plain"], abs=1e-6)


@pytest.mark.xdist_group("torchrun_run")
def test_a_two_process_run_stopped_by_sigterm_resumes_to_the_same_losses(
    torchrun_run, tiny_model_dir, tmp_path
):
    train = [*TORCHRUN, "-m", "xpretrieval", "train", *tiny_overrides(tiny_model_dir), *STOPPABLE]
    reference = torchrun_run

    stopped = tmp_path / "stopped"
    process = subprocess.Popen(
        [*train, f"hydra.run.dir={stopped}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    first = stopped / "checkpoints" / "step-0000003"
    deadline = time.monotonic() + 300
    while not first.is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGTERM)  # as a scheduler stops a job: every process
    _, stderr = process.communicate(timeout=300)
    assert first.is_dir(), stderr.decode()[-3000:]
    assert not (stopped / "metrics.json").exists()

    resume = [*TORCHRUN, "-m", "xpretrieval", "train", f"resume={stopped}"]
    resumed = subprocess.run(resume, cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert losses(stopped) == losses(reference)
    assert (stopped / "metrics.json").read_text() != ""
    ours = json.loads((stopped / "metrics.json").read_text())["aggregate"]
    assert ours == json.loads((reference / "metrics.json").read_text())["aggregate"]


def test_two_processes_validate_and_stop_early_together(tiny_model_dir, tmp_path):
    """The main process validates; when it stops early, every process stops at that step."""
    run_dir = tmp_path / "run"
    validating = ["validation.every=2", "validation.held_out_queries=2", "validation.patience=1"]
    train = [*TORCHRUN, "-m", "xpretrieval", "train", *tiny_overrides(tiny_model_dir)]
    result = subprocess.run(
        [*train, "trainer.max_steps=40", *validating, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    validated = (run_dir / "validation.csv").read_text().strip().splitlines()
    assert 2 <= len(validated) - 1 < 20  # stopped early, after a validation without a gain
    assert json.loads((run_dir / "metrics.json").read_text())["aggregate"]["nDCG@10"] > 0
