"""Stopping on SIGINT/SIGTERM at the end of the step in progress, so that a checkpoint can
be saved: a cluster's pre-emption or a Ctrl-C costs at most one step, not the run."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType


class TrainingInterrupted(Exception):
    """Training stopped on a signal after `step`; hooks have saved what they keep."""

    def __init__(self, signal_number: int, step: int) -> None:
        super().__init__(
            f"training stopped by {signal.Signals(signal_number).name} after step {step}"
        )
        self.signal_number = signal_number
        self.step = step


class StopSignals:
    """Within `with`, SIGINT and SIGTERM only set `received`; a second one acts as usual.
    Outside the main thread (where handlers cannot be set) it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.received = number
        signal.signal(number, self._previous[number])  # a second signal is not deferred

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
