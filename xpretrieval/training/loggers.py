"""Training logs: a CSV file and TensorBoard event files, one row every `every` steps."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from xpretrieval.core.hooks import Hook, TrainState
from xpretrieval.core.io import write_text


def logged_values(state: TrainState) -> dict[str, float]:
    """The logged values of a step: loss terms, learning rate and throughput."""
    values = {f"loss/{name}": float(value) for name, value in state.losses.items()}
    values.update({name: float(value) for name, value in state.statistics.items()})
    values["learning_rate"] = state.learning_rate
    values["samples_per_second"] = state.samples_per_second
    return values


def due(state: TrainState, every: int) -> bool:
    """Whether step `state.step` is logged: every `every` steps, and the last one."""
    return state.step % every == 0 or state.finished


class _StepTable:
    """A CSV file of rows keyed by their first column, `step`; columns come from the first row."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._columns: list[str] | None = None

    def truncate_after(self, step: int) -> None:
        """Keep the rows up to `step` of an existing file, and continue it (a resumed run)."""
        if not self.path.is_file():
            return
        with self.path.open(newline="", encoding="utf-8") as handle:
            header, *rows = list(csv.reader(handle))
        buffer = io.StringIO()
        csv.writer(buffer).writerows([header, *(row for row in rows if int(row[0]) <= step)])
        write_text(self.path, buffer.getvalue())
        self._columns = header

    def append(self, row: dict[str, float]) -> None:
        new_file = self._columns is None
        if new_file:
            self._columns = list(row)
        with self.path.open("w" if new_file else "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self._columns)
            if new_file:
                writer.writeheader()
            writer.writerow(row)


class CSVLogger(Hook):
    """Appends `step, epoch, elapsed_seconds, <metrics>` rows to `train_log.csv` and
    validation results to `validation.csv` in `folder`; a resumed run continues both files
    after dropping the rows logged past its checkpoint."""

    def __init__(self, folder: Path, every: int) -> None:
        self.every = every
        self.train = _StepTable(Path(folder) / "train_log.csv")
        self.validation = _StepTable(Path(folder) / "validation.csv")

    def on_train_start(self, state: TrainState) -> None:
        if state.step:
            self.train.truncate_after(state.step)
            self.validation.truncate_after(state.step)

    def on_step_end(self, state: TrainState) -> None:
        if not due(state, self.every):
            return
        row = {"step": state.step, "epoch": round(state.epoch, 4)}
        row["elapsed_seconds"] = round(state.elapsed_seconds, 3)
        row.update(logged_values(state))
        self.train.append(row)

    def on_validation(self, state: TrainState, metrics: dict[str, float]) -> None:
        self.validation.append({"step": state.step, **metrics})


class TensorBoardLogger(Hook):
    """Writes the logged values as TensorBoard scalars (view with `tensorboard --logdir`)."""

    def __init__(self, log_dir: Path, every: int, start_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # resuming from start_step: events a killed run wrote after it are discarded
        purge = start_step + 1 if start_step else None
        self._writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge)
        self.every = every

    def on_step_end(self, state: TrainState) -> None:
        if due(state, self.every):
            for name, value in logged_values(state).items():
                self._writer.add_scalar(name, value, state.step)

    def on_validation(self, state: TrainState, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self._writer.add_scalar(f"validation/{name}", value, state.step)

    def on_train_end(self, state: TrainState) -> None:
        self._writer.close()

    def on_interrupt(self, state: TrainState) -> None:
        self._writer.close()
