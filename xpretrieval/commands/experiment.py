"""The root config of a run: one component per conf/ group, built from a composed config."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING, DictConfig, OmegaConf

from xpretrieval.core.checks import check_range
from xpretrieval.core.config import register_root, to_objects
from xpretrieval.core.device import Precision
from xpretrieval.core.errors import ConfigError
from xpretrieval.data.dataset import SOURCES, DatasetConfig
from xpretrieval.evaluation.measures import EvaluationConfig
from xpretrieval.evaluation.suites import SuiteConfig
from xpretrieval.losses.base import Loss
from xpretrieval.models.base import ModelConfig
from xpretrieval.retrieval.export import ExportConfig
from xpretrieval.retrieval.index import IndexConfig
from xpretrieval.samplers.base import Sampler
from xpretrieval.training.batchers import Batcher
from xpretrieval.training.optim import OptimizerConfig
from xpretrieval.training.teacher import TeacherConfig
from xpretrieval.training.trackers import LoggerConfig
from xpretrieval.training.trainers import Trainer
from xpretrieval.training.validation import ValidationConfig


@register_root("experiment_schema")
@dataclass
class ExperimentConfig:
    """Everything one run needs; each field is a component chosen from its conf/ group."""

    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    sampler: Sampler = MISSING
    batcher: Batcher = MISSING
    losses: dict[str, Loss] = field(default_factory=dict)  # named, weighted training terms
    optimizer: OptimizerConfig = MISSING
    trainer: Trainer = MISSING
    index: IndexConfig = MISSING  # how test documents are searched (exact, inverted)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    # test collections measured one by one under the loaded model (`suite=beir_small`), in
    # place of dataset.test; off while suite.collections is empty
    suite: SuiteConfig = field(default_factory=SuiteConfig)
    # a trained model whose scores a distillation sampler learns from, computed at the start
    # of the run; off unless teacher.model is set
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    seed: int = 42
    device: str | None = None  # cpu, cuda, cuda:1, mps; null picks cuda > mps > cpu
    precision: Precision = Precision.auto  # auto: bf16 autocast on a GPU that supports it
    evaluate_before_training: bool = False  # also measure the untrained model, for comparison
    # a run directory to continue from its last checkpoint, exactly as if never interrupted;
    # auto: this run's own directory if it holds a checkpoint (relaunched sweeps, requeued jobs)
    resume: str | None = None
    # `train` in hard-negative rounds: round k > 1 mines the training queries with round
    # k - 1's model and trains from it on those negatives (commands/rounds.py); 1: one plain run
    rounds: int = 1
    export: ExportConfig = field(default_factory=ExportConfig)  # what `export` writes
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # csv, tensorboard, wandb, mlflow

    def __post_init__(self) -> None:
        check_range("rounds", self.rounds, at_least=1)
        validation = self.validation
        on = (self.dataset.dev is not None, validation.held_out_queries, validation.suite.enabled)
        if validation.enabled and not any(on):
            raise ValueError(
                f"validation.every={validation.every} needs queries to validate on: set "
                "dataset.dev, validation.held_out_queries (e.g. 100) or validation.suite"
            )


def load_experiment(cfg: DictConfig) -> ExperimentConfig:
    """Validate a composed config and build its component objects (no model is loaded yet)."""
    experiment = to_objects(cfg)
    if not isinstance(experiment, ExperimentConfig):
        raise ConfigError(f"expected an ExperimentConfig root, got {type(experiment).__name__}")
    return experiment


def without_unset_train_split(cfg: DictConfig) -> DictConfig:
    """`cfg` without a train split left incomplete (`dataset=beir_folder
    dataset.test.beir_folder=…` alone): evaluating or exporting needs only the test split."""
    train = cfg.dataset.get("train")
    unset = train is not None and (
        OmegaConf.missing_keys(train) or all(train.get(source) is None for source in SOURCES)
    )
    if not unset:
        return cfg
    cfg = cfg.copy()
    cfg.dataset.train = None
    return cfg
