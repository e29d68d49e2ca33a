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


def _process(rank: int, world: int, store: str, setting: dict, model_dir: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        totals, weights = train(setting, model_dir)
        torch.save({"totals": totals, "weights": weights}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def train_on_two_processes(setting: dict, model_dir: str, tmp_path: Path) -> list[dict]:
    mp.spawn(
        _process, args=(2, str(tmp_path / "store"), setting, model_dir, str(tmp_path)), nprocs=2
    )
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]


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


@pytest.mark.parametrize("name", list(SETTINGS))
def test_two_processes_train_as_one_on_the_global_batch(
    name, tiny_model_dir, masked_lm_dir, tmp_path
):
    setting = SETTINGS[name]
    model_dir = str(masked_lm_dir if setting["kind"] == "splade" else tiny_model_dir)
    alone = {k: v for k, v in setting.items() if k != "micro"}  # one pass, for reference
    totals, weights = train(alone, model_dir)
    ranks = train_on_two_processes(setting, model_dir, tmp_path)
    for rank in ranks:
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


def test_torchrun_trains_with_two_processes_and_one_run_directory(tiny_model_dir, tmp_path):
    """The main process alone writes the run (one directory, its log, checkpoints, metrics);
    every process trained (the environment records two). With evaluation.shard_size, both
    processes encode shards of the test documents, and the metrics are the same."""
    metrics = {}
    for name, extra in {"plain": [], "sharded": ["evaluation.shard_size=6"]}.items():
        run_dir = tmp_path / "runs" / name
        command = [*TORCHRUN, "-m", "xpretrieval", "train", *tiny_overrides(tiny_model_dir)]
        result = subprocess.run(
            [*command, *extra, f"hydra.run.dir={run_dir}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads((run_dir / "environment.json").read_text())["processes"] == 2
        metrics[name] = json.loads((run_dir / "metrics.json").read_text())["aggregate"]
        assert result.stdout.count("Trained model:") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # nothing from the others
    assert len(list((tmp_path / "runs" / "sharded" / "encoded").glob("shard-*.pt"))) == 4
    assert metrics["sharded"] == pytest.approx(metrics["plain"], abs=1e-6)


def test_a_two_process_run_stopped_by_sigterm_resumes_to_the_same_losses(tiny_model_dir, tmp_path):
    steps = ["trainer.max_steps=12", "trainer.checkpoint_every=3", "trainer.log_every=1"]
    train = [*TORCHRUN, "-m", "xpretrieval", "train", *tiny_overrides(tiny_model_dir), *steps]
    reference = tmp_path / "uninterrupted"
    result = subprocess.run([*train, f"hydra.run.dir={reference}"], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()[-3000:]

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
