"""A run directory belongs to one run: claim it (no two processes write into the same one),
and record what rebuilds the run: package versions, the code's git commit, the command."""

from __future__ import annotations

import fcntl
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import IO

import yaml

from xpretrieval.core.errors import ConfigError, RunDirectoryRefused
from xpretrieval.core.io import write_json, write_text

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

_claimed: list[IO[str]] = []  # lock files held until the process exits


def claim_run_dir(folder: Path, resuming: bool) -> None:
    """Lock `folder` for this process, or fail if another run holds it or (unless resuming)
    a finished run already wrote its config there."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / LOCK_FILE).open("a")  # "a": a refused run leaves the file as it was
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunDirectoryRefused(
            f"{folder}: another xpretrieval run is writing to this directory; "
            "give this one its own hydra.run.dir"
        ) from None
    if not resuming and (folder / "config.yaml").is_file():
        handle.close()
        raise RunDirectoryRefused(
            f"{folder} already holds a run (config.yaml); choose another hydra.run.dir, "
            f"or continue it with resume={folder}"
        )
    _claimed.append(handle)


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


def write_environment(folder: Path, extra: dict[str, object]) -> None:
    """`environment.json`: Python, platform, package versions, git commit, command line."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    write_json(
        folder / ENVIRONMENT_FILE,
        {
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
