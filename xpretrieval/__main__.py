"""`python -m xpretrieval COMMAND [OVERRIDES]`: compose the config with Hydra, call the command."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from xpretrieval.commands.dispatch import COMMANDS, launch_overrides, run_command
from xpretrieval.commands.tools import TOOLS, USAGE, run_tool
from xpretrieval.core import distributed
from xpretrieval.core.config import config_dir
from xpretrieval.core.errors import RunDirectoryRefused, UserInputError
from xpretrieval.training.interrupt import TrainingInterrupted


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] not in {*COMMANDS, *TOOLS}:
        print(USAGE, file=sys.stderr)
        sys.exit(0 if args and args[0] in ("-h", "--help") else 2)
    command, rest = args[0], args[1:]
    try:
        if command in TOOLS:
            return run_tool(command, rest)
        sys.argv = [f"{sys.argv[0]} {command}", *launch_overrides(command, rest)]
    except UserInputError as error:
        refuse(error)

    @hydra.main(config_path=config_dir(), config_name=command, version_base="1.3")
    def task(cfg: DictConfig) -> dict[str, float]:
        output_dir = distributed.broadcast(Path(HydraConfig.get().runtime.output_dir))  # the main's
        try:
            return run_command(command, cfg, output_dir, list(HydraConfig.get().overrides.task))
        except RunDirectoryRefused as error:  # printed, not logged: the folder is not ours
            refuse(error)
        except UserInputError as error:
            logging.getLogger("xpretrieval").error("%s", error)
            sys.exit(2)
        except TrainingInterrupted as stop:
            resume = f"python -m xpretrieval train resume={output_dir}"
            logging.getLogger("xpretrieval").warning("%s; continue with: %s", stop, resume)
            sys.exit(128 + stop.signal_number)

    task()


def refuse(error: Exception) -> None:
    """One line on stderr and exit status 2: the input was refused, nothing ran."""
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
