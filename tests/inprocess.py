"""The commands in this process, through the code the CLI runs after Hydra composed its config:
for tests that check what a run measures or writes rather than the command line itself (a
`python -m xpretrieval` subprocess spends seconds importing torch and transformers)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xpretrieval
from xpretrieval.commands import run_dir as run_dirs
from xpretrieval.commands.dispatch import COMMANDS


def train(overrides: Sequence[str], run_dir: Path) -> dict[str, Any]:
    """`python -m xpretrieval train <overrides> hydra.run.dir=<run_dir>` in this process (its
    overrides recorded for `resume` as the CLI records them); the run's metrics.json."""
    try:
        xpretrieval.train_from_overrides(list(overrides), run_dir)
    finally:
        release(Path(run_dir))
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def run(command: str, overrides: Sequence[str], run_dir: Path) -> dict[str, Any]:
    """`python -m xpretrieval <command> <overrides> hydra.run.dir=<run_dir>` (evaluate, mine,
    export) in this process; the command's result, as `run_command` returns it."""
    if command == "train":
        return train(overrides, run_dir)
    try:
        experiment = xpretrieval.configure(list(overrides), command=command)
        return COMMANDS[command](experiment, Path(run_dir), list(overrides))
    finally:
        release(Path(run_dir))


def release(run_dir: Path) -> None:
    """Let go of the run directories below `run_dir` that this process claimed (a CLI run
    releases its own when it exits), so that a CLI run may continue them."""
    for folder in [f for f in run_dirs._claimed if f.is_relative_to(run_dir.resolve())]:
        run_dirs._claimed.pop(folder).close()


def main(*args: str) -> int:
    """`python -m xpretrieval <args>` through its `main` in this process, for the commands that
    run before Hydra or without it (report, push, fuse, usage); its exit status (stdout and
    stderr for capsys)."""
    from xpretrieval.__main__ import main as cli_main

    saved = sys.argv
    sys.argv = ["xpretrieval", *args]
    try:
        cli_main()
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 1
    finally:
        sys.argv = saved
    return 0
