"""Where a run is logged: any of a CSV file, TensorBoard, Weights & Biases and MLflow
(`logger.backends=[csv,tensorboard,wandb]`). The last two are optional extras
(`pip install 'xpretrieval[trackers]'`) configured the usual way (`WANDB_MODE`,
`WANDB_API_KEY`, `MLFLOW_TRACKING_URI`); each receives the resolved config as parameters, the
loss terms, learning rate and throughput every `trainer.log_every` steps, the validation
metrics, and the final test metrics."""

from __future__ import annotations

import importlib.util
import re
from abc import abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from xpretrieval.core.config import flatten
from xpretrieval.core.errors import ConfigError
from xpretrieval.core.hooks import Hook, TrainState
from xpretrieval.training.loggers import CSVLogger, TensorBoardLogger, due, logged_values


class Backend(Enum):
    """Lower-case names, because configs select members by name (`logger.backends=[csv]`)."""

    csv = "csv"
    tensorboard = "tensorboard"
    wandb = "wandb"
    mlflow = "mlflow"


OPTIONAL_PACKAGES = {Backend.wandb: "wandb", Backend.mlflow: "mlflow"}


@dataclass
class LoggerConfig:
    """The trackers a training run logs to, and how the run is named there."""

    backends: list[Backend] = field(default_factory=lambda: [Backend.csv, Backend.tensorboard])
    project: str = "xpretrieval"  # the W&B project and the MLflow experiment
    run_name: str | None = None  # null: the run directory's name
    mlflow_tracking_uri: str | None = None  # null: MLFLOW_TRACKING_URI, or MLflow's default

    def __post_init__(self) -> None:
        for backend, package in OPTIONAL_PACKAGES.items():
            if backend in self.backends and importlib.util.find_spec(package) is None:
                raise ValueError(
                    f"backends: {backend.value} needs the {package} package: "
                    "pip install 'xpretrieval[trackers]'"
                )

    def hooks(
        self, output_dir: Path, every: int, start_step: int, config: dict[str, Any]
    ) -> list[Hook]:
        """One logging hook per backend; `config` is the run's resolved config."""
        name = self.run_name or output_dir.name
        built: list[Hook] = []
        for backend in dict.fromkeys(self.backends):
            if backend is Backend.csv:
                built.append(CSVLogger(output_dir, every=every))
            elif backend is Backend.tensorboard:
                built.append(TensorBoardLogger(output_dir / "tensorboard", every, start_step))
            elif backend is Backend.wandb:
                built.append(WandbLogger(self.project, name, output_dir, every, config))
            else:
                uri = self.mlflow_tracking_uri
                built.append(MLflowLogger(self.project, name, uri, every, config))
        return built


class ExperimentTracker(Hook):
    """A tracker that also records the run's final test metrics, then closes its run."""

    @abstractmethod
    def finish(self, results: dict[str, float]) -> None:
        """Record `results` (the test metrics) and end the tracker's run."""


class WandbLogger(ExperimentTracker):
    """A Weights & Biases run in `<run dir>/wandb` (offline with `WANDB_MODE=offline`)."""

    def __init__(
        self, project: str, name: str, output_dir: Path, every: int, config: dict[str, Any]
    ) -> None:
        import wandb

        self.every = every
        self._run = wandb.init(project=project, name=name, dir=str(output_dir), config=config)

    def on_step_end(self, state: TrainState) -> None:
        if due(state, self.every):
            self._run.log(logged_values(state), step=state.step)

    def on_validation(self, state: TrainState, metrics: dict[str, float]) -> None:
        self._run.log({f"validation/{k}": v for k, v in metrics.items()}, step=state.step)

    def on_interrupt(self, state: TrainState) -> None:
        self._run.finish(exit_code=1)

    def finish(self, results: dict[str, float]) -> None:
        self._run.summary.update({f"test/{k}": v for k, v in results.items()})
        self._run.finish()


class MLflowLogger(ExperimentTracker):
    """An MLflow run; the config's leaves are its parameters (`model.name_or_path`, …)."""

    def __init__(
        self, project: str, name: str, uri: str | None, every: int, config: dict[str, Any]
    ) -> None:
        import mlflow

        self.every = every
        self._mlflow = mlflow
        if uri is not None:
            mlflow.set_tracking_uri(uri)
        try:
            mlflow.set_experiment(project)
        except mlflow.exceptions.MlflowException as error:  # a store it cannot open
            raise ConfigError(
                f"logger.mlflow_tracking_uri={mlflow.get_tracking_uri()}: MLflow cannot log "
                f"there ({str(error).splitlines()[0][:300]})"
            ) from None
        mlflow.start_run(run_name=name)
        mlflow.log_params({k: str(v)[:6000] for k, v in flatten(config).items()})

    def on_step_end(self, state: TrainState) -> None:
        if due(state, self.every):
            self._mlflow.log_metrics(_metric_names(logged_values(state)), step=state.step)

    def on_validation(self, state: TrainState, metrics: dict[str, float]) -> None:
        values = {f"validation/{k}": v for k, v in metrics.items()}
        self._mlflow.log_metrics(_metric_names(values), step=state.step)

    def on_interrupt(self, state: TrainState) -> None:
        self._mlflow.end_run(status="KILLED")

    def finish(self, results: dict[str, float]) -> None:
        self._mlflow.log_metrics(_metric_names({f"test/{k}": v for k, v in results.items()}))
        self._mlflow.end_run()


def _metric_names(values: dict[str, float]) -> dict[str, float]:
    """MLflow accepts letters, digits and `_-. :/` in names: `nDCG@10` becomes `nDCG_10`."""
    return {re.sub(r"[^\w\-. :/]", "_", name): value for name, value in values.items()}
