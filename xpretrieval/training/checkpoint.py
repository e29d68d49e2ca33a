"""Checkpoints: the model in Hugging Face format plus the training state, written atomically."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from xpretrieval.core.hooks import Hook, TrainState
from xpretrieval.core.io import atomic_directory

logger = logging.getLogger(__name__)


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints under `directory`, oldest first (temporary folders are skipped)."""
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.glob("step-*") if path.is_dir())


class Checkpointer(Hook):
    """Saves every `every` steps (0: not by steps), every `minutes` of training (None: not by
    time) and after the last step, keeping the `keep` most recent checkpoints. Each is
    complete or absent: it is written to a temporary folder and renamed into place."""

    def __init__(
        self,
        directory: Path,
        every: int,
        keep: int,
        save: Callable[[Path], None],
        minutes: float | None = None,
    ):
        self.directory = Path(directory)
        self.every = every
        self.minutes = minutes
        self.keep = keep
        self._save = save
        self._saved_at = time.monotonic()
        self.last: Path | None = None

    def on_train_start(self, state: TrainState) -> None:
        self._saved_at = time.monotonic()

    def on_step_end(self, state: TrainState) -> None:
        by_steps = self.every and state.step % self.every == 0
        by_time = self.minutes and time.monotonic() - self._saved_at >= self.minutes * 60
        if by_steps or by_time:
            self._checkpoint(state.step)

    def on_train_end(self, state: TrainState) -> None:
        if self.last is None or self.last.name != checkpoint_name(state.step):
            self._checkpoint(state.step)

    def on_interrupt(self, state: TrainState) -> None:
        self.on_train_end(state)  # the run can be resumed from the step it stopped at

    def _checkpoint(self, step: int) -> None:
        target = self.directory / checkpoint_name(step)
        with atomic_directory(target) as tmp:
            self._save(tmp)
        self.last = target
        self._saved_at = time.monotonic()
        logger.info("Saved checkpoint %s", target)
        for old in list_checkpoints(self.directory)[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
