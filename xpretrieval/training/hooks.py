"""Hooks run at fixed moments of training; progress display, logging and checkpointing are hooks."""

from __future__ import annotations

from tqdm.auto import tqdm

from xpretrieval.training.state import TrainState


class Hook:
    """Base hook: override the moments you need; each receives the current `TrainState`."""

    def on_train_start(self, state: TrainState) -> None:
        """Before the first step (state.step == 0)."""

    def on_step_end(self, state: TrainState) -> None:
        """After each optimiser step."""

    def on_train_end(self, state: TrainState) -> None:
        """After the last step, also when training stops early."""


class ProgressBar(Hook):
    """A tqdm bar over the steps, showing the loss and the training throughput."""

    def __init__(self) -> None:
        self._bar: tqdm | None = None

    def on_train_start(self, state: TrainState) -> None:
        self._bar = tqdm(
            total=state.max_steps, desc="train", unit="step", dynamic_ncols=True, disable=None
        )

    def on_step_end(self, state: TrainState) -> None:
        assert self._bar is not None
        self._bar.set_postfix(
            loss=f"{state.losses['total']:.4f}",
            samples_s=f"{state.samples_per_second:.1f}",
            lr=f"{state.learning_rate:.2e}",
            refresh=False,
        )
        self._bar.update(1)

    def on_train_end(self, state: TrainState) -> None:
        if self._bar is not None:
            self._bar.close()
