"""A run directory belongs to one run: claim it (no two processes write into the same one),
and record what rebuilds the run: package versions, the code's git commit, the command."""

from __future__ import annotations

import fcntl
import json
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import IO

import torch
import yaml
from omegaconf import OmegaConf

from xpretrieval.core import distributed
from xpretrieval.core.errors import ConfigError, RunDirectoryRefused
from xpretrieval.core.io import write_json, write_text
from xpretrieval.data.collection import Collection

LOCK_FILE = ".xpretrieval.lock"
ENVIRONMENT_FILE = "environment.json"
PACKAGES = (
    "xpretrieval",
    "torch",
    "transformers",
    "tokenizers",
    "hydra-core",
    "omegaconf",
    "ir-datasets",
    "ir-measures",
    "numpy",
    "scipy",
    "bm25s",
)

_claimed: dict[Path, IO[str]] = {}  # lock files held until the process exits, by folder


def claim_run_dir(folder: Path, command: str, resuming: bool) -> None:
    """Lock `folder` for this process, or fail if another process holds it, if (unless
    resuming) a run already wrote its config there, or if the run there is another command's:
    an evaluation resumed in a training run's folder would replace what that training measured.
    The lock lasts until the process exits; the same process may claim the folder again (the
    Python API resuming a run it trained)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key not in _claimed:
        handle = (folder / LOCK_FILE).open("a")  # "a": a refused run leaves the file as it was
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunDirectoryRefused(
                f"{folder}: another xpretrieval run is writing to this directory; "
                "give this one its own hydra.run.dir"
            ) from None
        _claimed[key] = handle
    _check_claimable(folder, command, resuming)


def _check_claimable(folder: Path, command: str, resuming: bool) -> None:
    if not resuming:
        if (folder / "config.yaml").is_file():
            raise RunDirectoryRefused(
                f"{folder} already holds a run (config.yaml); choose another hydra.run.dir, "
                f"or continue it with resume={folder}"
            )
        return
    held = recorded_command(folder)
    if held is not None and held != command:
        raise RunDirectoryRefused(
            f"resume={folder} holds a `{held}` run; `{command}` would replace what it "
            f"recorded. Give `{command}` its own folder (drop resume=)"
        )
    if command != "train" and (folder / "metrics.json").is_file():
        raise RunDirectoryRefused(
            f"resume={folder}: this `{command}` run finished (metrics.json); resume continues "
            "an interrupted one. Start a new run instead (drop resume=)"
        )


def recorded_command(folder: Path) -> str | None:
    """The command whose run `folder` holds (environment.json's `run`; `train` for a folder
    with checkpoints that predates it), or None for a folder no run has recorded yet."""
    environment = folder / ENVIRONMENT_FILE
    if environment.is_file():
        try:
            recorded = json.loads(environment.read_text()).get("run")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if isinstance(recorded, str):
            return recorded
    return "train" if (folder / "checkpoints").is_dir() else None


def write_overrides(folder: Path, overrides: list[str]) -> None:
    """`.hydra/overrides.yaml`, where Hydra keeps them: what `resume` recomposes the run from
    and what `report` reads the swept parameters from (`resume=` itself is left out)."""
    kept = [item for item in overrides if item.split("=", 1)[0] != "resume"]
    write_text(folder / ".hydra" / "overrides.yaml", yaml.safe_dump(kept))


def check_output_writable(overrides: list[str]) -> None:
    """Fail with one line, before Hydra creates it, when the folder runs are written under
    (the fixed start of hydra.run.dir or hydra.sweep.dir) cannot be created or written."""
    sweep = any(item in ("-m", "--multirun") for item in overrides)
    key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    given = [item.split("=", 1)[1] for item in overrides if item.startswith(f"{key}=")]
    value = given[-1] if given else ("multirun/" if sweep else "outputs/")
    fixed = value.split("${", 1)[0]
    folder = Path(fixed if fixed.endswith("/") or not fixed else str(Path(fixed).parent))
    folder = folder if str(folder) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=folder)
        probe.close()
    except OSError as error:
        raise ConfigError(
            f"{key}={value}: cannot write under {folder} ({error.strerror or error}); choose "
            f"a writable folder with {key}=..."
        ) from None


def record_config(folder: Path, experiment: object, overrides: list[str] | None) -> dict:
    """Write the resolved config (it rebuilds the run as it was) and the overrides (what a
    resume recomposes it from), once every check that could refuse the run passed. Returns the
    resolved config as plain containers (what trackers record)."""
    resolved = OmegaConf.structured(experiment)
    write_text(folder / "config.yaml", OmegaConf.to_yaml(resolved))
    if overrides is not None:
        write_overrides(folder, overrides)
    return OmegaConf.to_container(resolved, enum_to_str=True)


def record_environment(
    folder: Path, command: str, device: torch.device, **splits: Collection
) -> None:
    """environment.json with the device, the processes and the data the run used."""
    datasets = {
        role: {"name": c.name, "documents": len(c.documents), "queries": len(c.queries)}
        for role, c in splits.items()
    }
    processes = distributed.world().size  # training processes (torchrun), each on a device
    extra = {"device": str(device), "processes": processes, "datasets": datasets}
    write_environment(folder, command, extra)


def write_environment(folder: Path, command: str, extra: dict[str, object]) -> None:
    """`environment.json`: the command, Python, platform, package versions, git commit, argv."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    write_json(
        folder / ENVIRONMENT_FILE,
        {
            "run": command,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "packages": versions,
            "git": _git_state(Path(__file__).resolve().parent),
            "command": sys.argv,
            **extra,
        },
    )


def _git_state(source: Path) -> dict[str, object] | None:
    """The commit of the checkout holding the code and whether it has changes; None outside git."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=source, capture_output=True, text=True, timeout=10
        )
        if result.returncode != 0:
            raise OSError(result.stderr)
        return result.stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return None
