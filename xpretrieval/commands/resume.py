"""Continuing a run: which checkpoint to start from, the overrides that recompose the run's
config (its own, then the ones given now, which win: e.g. more `trainer.max_steps`), and which
changes a resume allows, checked on the config itself."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from xpretrieval.core.config import flatten
from xpretrieval.core.errors import ConfigError
from xpretrieval.training.checkpoint import list_checkpoints
from xpretrieval.training.learner import TRAINING_STATE_FILE

SAVED_OVERRIDES = Path(".hydra") / "overrides.yaml"  # where Hydra keeps a run's overrides


AUTO = "auto"  # resume=auto: continue the run directory's own checkpoint if it has one


def _complete_checkpoints(run_dir: Path) -> list[Path]:
    """A run's checkpoints that hold a training state, oldest first."""
    checkpoints = list_checkpoints(Path(run_dir) / "checkpoints")
    return [path for path in checkpoints if (path / TRAINING_STATE_FILE).is_file()]


def has_checkpoint(run_dir: Path) -> bool:
    return bool(_complete_checkpoints(run_dir))


def last_checkpoint(run_dir: Path) -> Path:
    """The most recent complete checkpoint of a run (written atomically: never a partial one)."""
    checkpoints = _complete_checkpoints(run_dir)
    if not checkpoints:
        raise ConfigError(
            f"resume={run_dir}: no checkpoint under {Path(run_dir) / 'checkpoints'}; "
            "set trainer.checkpoint_every to keep checkpoints during training"
        )
    _check_readable(checkpoints[-1])
    return checkpoints[-1]


def _check_readable(checkpoint: Path) -> None:
    """Read every weights and training-state file of `checkpoint` (a disk that filled up or a
    copy cut short leaves them truncated), so that resuming fails now, naming the file."""
    files = [checkpoint / TRAINING_STATE_FILE, *sorted(checkpoint.rglob("*.safetensors"))]
    for file in files:
        try:
            if file.suffix == ".safetensors":
                load_file(file)
            else:
                torch.load(file, weights_only=True)
        except Exception as error:  # torch and safetensors raise several kinds for a bad file
            raise ConfigError(
                f"resume: checkpoint file {file} cannot be read ({type(error).__name__}: "
                f"{str(error)[:200]}); it is damaged or truncated. Move {checkpoint} aside to "
                "resume from the checkpoint before it"
            ) from None


# what a resumed run may change: its length, how it logs, checkpoints, validates and is
# evaluated, and whether it recomputes activations in backward (the same gradients, and the
# random streams are left as they were). Anything else (model, optimiser, losses, sampler,
# data, seed, precision) would silently disagree with the restored state, so it is refused.
RESUMABLE_KEYS = (
    "trainer.max_steps",
    "trainer.epochs",
    "trainer.log_every",
    "trainer.checkpoint_every",
    "trainer.checkpoint_minutes",
    "trainer.keep_checkpoints",
    "model.gradient_checkpointing",
    "validation.every",
    "validation.patience",
    "validation.restore_best",
    "validation.top_k",
    "evaluation",
    "suite",
    "index",
    "logger",
    "device",
    "resume",
)


def check_resume_changes(experiment: object, run_dir: Path) -> None:
    """Refuse a resumed run whose config differs from the one saved in `run_dir/config.yaml`
    outside `RESUMABLE_KEYS`, naming the first such key with both values: the same rule for a
    config composed on the command line and one built in Python."""
    if not (Path(run_dir) / "config.yaml").is_file():
        raise ConfigError(f"resume={run_dir}: not a run directory of `train` (no config.yaml)")
    saved, now = saved_and_given(experiment, Path(run_dir))
    for key in sorted(saved.keys() | now.keys()):
        if not under(key, RESUMABLE_KEYS) and saved.get(key, _ABSENT) != now.get(key, _ABSENT):
            was, given = saved.get(key, "(absent)"), now.get(key, "(absent)")
            raise ConfigError(
                f"{key}: a resumed run cannot change it ({was} -> {given}): its restored "
                f"model, optimiser and data would disagree. A resume may change "
                f"{', '.join(RESUMABLE_KEYS[:-1])}; start a new run for other changes"
            )


_ABSENT = object()


def under(key: str, settings: tuple[str, ...]) -> bool:
    """Whether the dotted `key` is one of `settings` or lies under one (`evaluation.top_k`
    under `evaluation`)."""
    return any(key == setting or key.startswith(f"{setting}.") for setting in settings)


def saved_and_given(experiment: object, run_dir: Path) -> tuple[dict, dict]:
    """The config a run saved (`run_dir/config.yaml`) and `experiment`'s, as flat dicts of
    dotted keys, to compare setting by setting (one line naming a damaged file)."""
    saved_file = run_dir / "config.yaml"
    try:
        saved = flatten(OmegaConf.to_container(OmegaConf.load(saved_file), resolve=True))
    except Exception as error:  # omegaconf and yaml raise several kinds for a damaged file
        raise ConfigError(f"resume={run_dir}: {saved_file} cannot be read ({error})") from None
    given = OmegaConf.to_container(OmegaConf.structured(experiment), resolve=True, enum_to_str=True)
    return saved, flatten(given)


def run_in_resumed_directory(command: str, overrides: list[str]) -> list[str]:
    """`overrides` with `hydra.run.dir` set to the resumed run's folder, so that a resumed run
    logs into its own log instead of a new folder under outputs/ (an evaluation continues
    there from its finished shards)."""
    resume = _resumed_folder(command, overrides)
    if resume is None:
        return overrides
    run_dirs = [_value(item) for item in overrides if _key(item) == "hydra.run.dir"]
    if run_dirs and Path(run_dirs[-1]).resolve() != Path(resume).resolve():
        raise ConfigError(
            f"resume={resume} continues in its own folder; drop hydra.run.dir={run_dirs[-1]}"
        )
    return overrides if run_dirs else [*overrides, f"hydra.run.dir={resume}"]


def with_saved_overrides(command: str, overrides: list[str]) -> list[str]:
    """For `train resume=<run>`: the run's saved overrides, then `overrides` (a key given again
    replaces the saved one), so that the resumed config is the run's own unless changed now;
    which changes a resume allows is `check_resume_changes`'s rule, in the command."""
    resume = _resumed_folder(command, overrides)
    if resume is None or command != "train":
        return list(overrides)
    saved_file = Path(resume) / SAVED_OVERRIDES
    if not saved_file.is_file():
        if not (Path(resume) / "config.yaml").is_file():
            raise ConfigError(
                f"resume={resume}: not a run directory of `python -m xpretrieval train` "
                f"(no config.yaml)"
            )
        return list(overrides)  # a run started from Python: its config.yaml alone
    saved = [str(item) for item in OmegaConf.load(saved_file)]
    given = {_key(item) for item in overrides}
    return [item for item in saved if _key(item) not in given] + list(overrides)


def _resumed_folder(command: str, overrides: list[str]) -> str | None:
    """The folder of `resume=<folder>` among `overrides` (None: no resume, or `auto`)."""
    resume = [_value(item) for item in overrides if _key(item) == "resume"]
    if command not in ("train", "evaluate", "mine") or not resume:
        return None
    return None if resume[-1] in ("", "null", AUTO) else resume[-1]


def _value(override: str) -> str:
    """`resume='/runs/é'` -> `/runs/é`: the value, without the quotes Hydra needs around text
    it cannot read unquoted (non-ASCII characters, spaces)."""
    value = override.split("=", 1)[1]
    quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
    return value[1:-1] if quoted else value


def _key(override: str) -> str:
    """`+experiment=splade` -> `experiment`; `losses.rank.scale=2` -> `losses.rank.scale`."""
    return override.split("=", 1)[0].lstrip("+~")
