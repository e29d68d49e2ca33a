"""Continuing a run: which checkpoint to start from, and the overrides that recompose the
run's config (its own, then the ones given now, which win: e.g. more `trainer.max_steps`)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from xpretrieval.errors import ConfigError
from xpretrieval.training.checkpoint import list_checkpoints
from xpretrieval.training.learner import TRAINING_STATE_FILE

SAVED_OVERRIDES = Path(".hydra") / "overrides.yaml"  # where Hydra keeps a run's overrides


def last_checkpoint(run_dir: Path) -> Path:
    """The most recent complete checkpoint of a run (written atomically: never a partial one)."""
    checkpoints = [
        path
        for path in list_checkpoints(Path(run_dir) / "checkpoints")
        if (path / TRAINING_STATE_FILE).is_file()
    ]
    if not checkpoints:
        raise ConfigError(
            f"resume={run_dir}: no checkpoint under {Path(run_dir) / 'checkpoints'}; "
            "set trainer.checkpoint_every to keep checkpoints during training"
        )
    return checkpoints[-1]


def resumed_overrides(run_dir: Path, overrides: list[str]) -> list[str]:
    """The run's saved overrides, then `overrides`; a key given again now replaces the saved one."""
    saved_file = Path(run_dir) / SAVED_OVERRIDES
    if not saved_file.is_file():
        raise ConfigError(
            f"resume={run_dir}: not a run directory of `python -m xpretrieval train` "
            f"(no {SAVED_OVERRIDES})"
        )
    saved = [str(item) for item in OmegaConf.load(saved_file)]
    given = {_key(item) for item in overrides}
    return [item for item in saved if _key(item) not in given] + list(overrides)


def _key(override: str) -> str:
    """`+experiment=splade` -> `experiment`; `losses.rank.scale=2` -> `losses.rank.scale`."""
    return override.split("=", 1)[0].lstrip("+~")
