"""Hooks of every training run: the progress display, and a step timer for benchmarks."""

from __future__ import annotations

import logging
import time

import torch
from tqdm.auto import tqdm

from xpretrieval.core.hooks import Hook, TrainState

logger = logging.getLogger(__name__)


class StepTimer(Hook):
    """Wall-clock seconds of each training step, in `seconds` (benchmarks read them)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._last = 0.0

    def on_train_start(self, state: TrainState) -> None:
        self._last = time.perf_counter()

    def on_step_end(self, state: TrainState) -> None:
        if torch.cuda.is_available():  # a GPU step ends when its queued kernels have run
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.seconds.append(now - self._last)
        self._last = now


class ProgressBar(Hook):
    """A tqdm bar over the steps; on logging steps it shows the loss, the throughput and the
    learning rate. Where there is no terminal (a batch job's log file), a log line on each
    logging step instead."""

    def __init__(self) -> None:
        self._bar: tqdm | None = None

    def on_train_start(self, state: TrainState) -> None:
        self._bar = tqdm(
            total=state.max_steps, desc="train", unit="step", dynamic_ncols=True, disable=None
        )

    def on_step_end(self, state: TrainState) -> None:
        assert self._bar is not None
        if not self._bar.disable:
            self._bar.update(1)
        if not state.logged:  # reading the loss would wait for the device
            return
        shown = {
            "loss": f"{float(state.losses['total']):.4f}",
            "samples/s": f"{state.samples_per_second:.1f}",
            "lr": f"{state.learning_rate:.2e}",
        }
        if not self._bar.disable:
            self._bar.set_postfix(shown)
        else:
            details = " ".join(f"{name}={value}" for name, value in shown.items())
            logger.info("step %d/%d %s", state.step, state.max_steps, details)

    def on_validation(self, state: TrainState, metrics: dict[str, float]) -> None:
        shown = " ".join(f"{name}={value:.4f}" for name, value in metrics.items())
        logger.info("step %d/%d validation %s", state.step, state.max_steps, shown)

    def on_train_end(self, state: TrainState) -> None:
        if self._bar is not None:
            self._bar.close()
