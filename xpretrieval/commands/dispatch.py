"""From a command name and its Hydra overrides to the command's run: the overrides a launch
composes (a resumed run's own, its folder, torchrun's processes), then the command itself."""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from xpretrieval.commands.evaluate import run_evaluate, run_mine
from xpretrieval.commands.experiment import (
    ExperimentConfig,
    load_experiment,
    without_unset_train_split,
)
from xpretrieval.commands.export import run_export
from xpretrieval.commands.resume import run_in_resumed_directory, with_saved_overrides
from xpretrieval.commands.rounds import run_train_rounds
from xpretrieval.commands.run_dir import check_output_writable
from xpretrieval.core import distributed
from xpretrieval.core.errors import ConfigError

COMMANDS: dict[str, Callable[[ExperimentConfig, Path, list[str]], dict[str, float]]] = {
    "train": run_train_rounds,
    "evaluate": run_evaluate,
    "mine": run_mine,
    "export": run_export,
}


# Hydra's own flags that take a value (`--cfg job`): kept with their value, after the overrides
VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn"}
VALUE_FLAGS |= {"--config-dir", "-cd", "--experimental-rerun"}


def launch_overrides(command: str, args: list[str]) -> list[str]:
    """Hydra's arguments for `command`: the overrides (a resumed run's saved ones first, its
    own folder as the run directory, under torchrun one run directory for the main process
    alone), then Hydra's flags as given (`--cfg job`, `-m`), since Hydra reads the overrides
    as one block. Refuses, before Hydra creates anything, an output folder it cannot write."""
    overrides, flags = split_hydra_flags(args)
    overrides = run_in_resumed_directory(command, with_saved_overrides(command, overrides))
    overrides = [quoted_for_hydra(item) for item in overrides]  # those added here too
    check_output_writable(overrides)
    return overrides + processes_overrides(command, flags) + flags


def split_hydra_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """`args` as (overrides, Hydra's flags with their values), each in the order given."""
    overrides: list[str] = []
    flags: list[str] = []
    for i, item in enumerate(args):
        is_value = i > 0 and args[i - 1] in VALUE_FLAGS
        (flags if item.startswith("-") or is_value else overrides).append(item)
    return overrides, flags


def quoted_for_hydra(override: str) -> str:
    """`key=value` with the value in quotes when Hydra's lexer cannot read it bare (a run
    folder named with non-ASCII characters, `resume=/runs/café`), else unchanged."""
    key, equals, value = override.partition("=")
    bare = value.isascii() and " " not in value
    if not equals or bare or value[:1] in "'\"[{" or "'" in value:
        return override
    return f"{key}='{value}'"


def run_command(
    command: str, cfg: DictConfig, output_dir: Path, overrides: list[str]
) -> dict[str, float]:
    """Build the experiment from the composed config and run `command` on it."""
    if not distributed.world().main:  # the main process reports; the others only warn
        logging.getLogger().setLevel(logging.WARNING)
    if command != "train":
        cfg = without_unset_train_split(cfg)
    return COMMANDS[command](load_experiment(cfg), output_dir, overrides)


def processes_overrides(command: str, flags: list[str]) -> list[str]:
    """Under torchrun: join the process group, and keep every process but the main one from
    creating a run directory (Hydra's, in a temporary folder instead). One run at a time."""
    if not distributed.launched_by_torchrun():
        return []
    if command != "train":
        raise ConfigError(f"{command} runs in one process; torchrun launches `train` only")
    if any(item in ("-m", "--multirun") for item in flags):
        raise ConfigError("-m: a sweep under torchrun is not supported; launch one run each")
    if distributed.start().main:
        return []
    scratch = tempfile.mkdtemp(prefix="xpretrieval-process-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return [f"hydra.run.dir={scratch}", "hydra/job_logging=stdout"]
