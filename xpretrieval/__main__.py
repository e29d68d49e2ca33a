"""`python -m xpretrieval {train,evaluate} [Hydra overrides]`: thin Hydra entry points."""

from __future__ import annotations

import atexit
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from xpretrieval.commands import baselines, push, report
from xpretrieval.commands.experiment import (
    ExperimentConfig,
    load_experiment,
    run_evaluate,
    run_export,
    run_mine,
    without_unset_train_split,
)
from xpretrieval.commands.resume import (
    AUTO,
    has_checkpoint,
    resumed_overrides,
    run_in_resumed_directory,
)
from xpretrieval.commands.rounds import run_train_rounds
from xpretrieval.commands.run_dir import check_output_writable
from xpretrieval.core import distributed
from xpretrieval.core.config import config_dir
from xpretrieval.core.errors import ConfigError, RunDirectoryRefused, UserInputError
from xpretrieval.training.interrupt import TrainingInterrupted

logger = logging.getLogger("xpretrieval")

COMMANDS: dict[str, Callable[[ExperimentConfig, Path, list[str]], dict[str, float]]] = {
    "train": run_train_rounds,
    "evaluate": run_evaluate,
    "mine": run_mine,
    "export": run_export,
}

TOOLS: dict[str, Callable[[list[str]], None]] = {
    "report": report.main,
    "baseline": baselines.main,
    "push": push.main,
}

USAGE = """usage: python -m xpretrieval {train,evaluate,mine,export} [OVERRIDES...]
       python -m xpretrieval report FOLDER [--metric nDCG@10] [--baseline RUN]
       python -m xpretrieval baseline [--fast] experiments/NAME...
       python -m xpretrieval push RUN_OR_CHECKPOINT OWNER/NAME [--private] [--card-only]

  train      train the configured model on dataset.train, then evaluate it on dataset.test
  evaluate   evaluate the configured model (model.name_or_path) on dataset.test
  mine       rank the training queries with the model: a run of hard negatives
  export     encode dataset.test for other engines: Anserini files (SPLADE), .npy (dense)
  report     gather the runs under FOLDER (e.g. a multirun) into one table and plots
  baseline   re-run recorded baselines and compare with their recorded metrics
  push       upload a trained model to the Hugging Face Hub with a generated model card

OVERRIDES are Hydra's: +experiment=dense  dataset=scifact  trainer.max_steps=200
Add --help after the command for the config groups, --cfg job for the composed config."""


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] in TOOLS:
        try:
            TOOLS[args[0]](args[1:])
        except UserInputError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        return
    if not args or args[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        sys.exit(0 if args and args[0] in ("-h", "--help") else 2)
    command = args[0]
    try:
        overrides = run_in_resumed_directory(command, args[1:])
        check_output_writable(overrides)
        overrides += processes_overrides(command, overrides)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [f"{sys.argv[0]} {command}", *overrides]

    @hydra.main(config_path=config_dir(), config_name=command, version_base="1.3")
    def task(cfg: DictConfig) -> dict[str, float]:
        if not distributed.world().main:  # the main process reports; the others only warn
            logging.getLogger().setLevel(logging.WARNING)
        # under torchrun the main process's run directory (the others write none)
        output_dir = distributed.broadcast(Path(HydraConfig.get().runtime.output_dir))
        overrides = list(HydraConfig.get().overrides.task)
        try:
            resume = cfg.get("resume") if command == "train" else None
            if resume == AUTO:  # this folder's own checkpoint, if an earlier launch left one
                resume = str(output_dir) if has_checkpoint(output_dir) else None
            if resume:
                # the run's own config: its saved overrides, then today's
                given = [item for item in overrides if not item.startswith("resume=")]
                overrides = resumed_overrides(Path(resume), [*given, f"resume={resume}"])
                cfg = compose(command, overrides=overrides)
            if command != "train":
                cfg = without_unset_train_split(cfg)
            return COMMANDS[command](load_experiment(cfg), output_dir, overrides)
        except RunDirectoryRefused as error:  # printed, not logged: the folder is not ours
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except UserInputError as error:
            logger.error("%s", error)
            sys.exit(2)
        except TrainingInterrupted as stop:
            logger.warning(
                "%s; continue with: python -m xpretrieval train resume=%s", stop, output_dir
            )
            sys.exit(128 + stop.signal_number)

    task()


def processes_overrides(command: str, overrides: list[str]) -> list[str]:
    """Under torchrun: join the process group, and keep every process but the main one from
    creating a run directory (Hydra's, in a temporary folder instead). One run at a time."""
    if not distributed.launched_by_torchrun():
        return []
    if command != "train":
        raise ConfigError(f"{command} runs in one process; torchrun launches `train` only")
    if any(item in ("-m", "--multirun") for item in overrides):
        raise ConfigError("-m: a sweep under torchrun is not supported; launch one run each")
    if distributed.start().main:
        return []
    scratch = tempfile.mkdtemp(prefix="xpretrieval-process-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return [f"hydra.run.dir={scratch}", "hydra/job_logging=stdout"]


if __name__ == "__main__":
    main()
