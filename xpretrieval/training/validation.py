"""Validation while training: measure the model on held-out queries every N steps, keep the
best weights by a metric, and stop early when it stops improving."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from xpretrieval.core.checks import check_range
from xpretrieval.core.device import Precision
from xpretrieval.core.hooks import Hook, TrainState
from xpretrieval.data.collection import Collection
from xpretrieval.evaluation.measures import compute_metrics, parse_measure
from xpretrieval.evaluation.suites import SuiteConfig, suite_mean
from xpretrieval.models.base import BiEncoder
from xpretrieval.models.encoding import Batching
from xpretrieval.retrieval.index import IndexConfig
from xpretrieval.retrieval.retrieve import retrieve

logger = logging.getLogger(__name__)


@dataclass
class ValidationConfig:
    """When and on what to validate; off unless `every` > 0."""

    every: int = 0  # steps between validations (and after the last step); 0: no validation
    # train queries set aside for validation (and removed from training) when the dataset
    # has no dev split; chosen at random with the run's seed
    held_out_queries: int = 0
    metric: str = "nDCG@10"  # ir-measures name; higher is better
    patience: int | None = None  # validations without improvement before stopping; null: never
    restore_best: bool = True  # test the best validated weights rather than the last ones
    top_k: int = 100  # documents retrieved per validation query
    # validate on these collections (typically with a nano cut), `metric` being their mean,
    # instead of dataset.dev or held-out queries: `+suite@validation.suite=beir_small
    # validation.suite.nano.queries=50 validation.suite.nano.bm25_pool=100`; off while empty
    suite: SuiteConfig = field(default_factory=SuiteConfig)

    def __post_init__(self) -> None:
        for name in ("every", "held_out_queries"):
            check_range(name, getattr(self, name), at_least=0)
        if self.suite.enabled and self.held_out_queries:
            raise ValueError(
                f"held_out_queries={self.held_out_queries}: validation on suite.collections "
                "holds out no training queries; set held_out_queries=0 or drop the suite"
            )
        check_range("patience", self.patience, at_least=1, optional=True)
        check_range("top_k", self.top_k, at_least=1)
        parse_measure(self.metric, field="metric")

    @property
    def enabled(self) -> bool:
        return self.every > 0


class Validator(Hook):
    """Measures `metric` of the model on a validation collection every `config.every` steps
    and after the last (in eval mode, then back to training), and hands the result to the
    `on_validation` of `listeners` (typically all the run's hooks: best-model keeping,
    loggers). Put it first among the hooks, so that a checkpoint of a step includes its result.
    On a suite (collections by name), `metric` is their mean (`suite_mean`), and each
    collection's value is reported too, as `<metric>/<name>`."""

    def __init__(
        self,
        model: BiEncoder,
        config: ValidationConfig,
        collection: Collection | Mapping[str, Collection],
        index: IndexConfig,
        batching: Batching,
        device: torch.device,
        precision: Precision,
        listeners: Sequence[Hook] = (),
    ) -> None:
        self.model = model
        self.listeners = listeners
        self.config = config
        self.collection = collection
        self.index = index
        self.batching = batching
        self.device = device
        self.precision = precision

    def on_step_end(self, state: TrainState) -> None:
        if state.step % self.config.every == 0 or state.finished:
            metrics = self.validate()
            for hook in self.listeners:
                hook.on_validation(state, metrics)

    def validate(self) -> dict[str, float]:
        if isinstance(self.collection, Collection):
            return self.measure(self.collection)
        metric = self.config.metric
        values = {name: self.measure(c) for name, c in self.collection.items()}
        each = {f"{metric}/{name}": measures[metric] for name, measures in values.items()}
        return {metric: suite_mean(values)[metric], **each}

    def measure(self, collection: Collection) -> dict[str, float]:
        """`metric` of the model on one collection."""
        model = self.model
        assert isinstance(model, nn.Module)
        model.eval()
        try:
            retrieval = retrieve(
                model,
                collection,
                self.index,
                self.config.top_k,
                self.batching,
                self.device,
                self.precision,
            )
        finally:
            model.train()
        return compute_metrics(retrieval.run, collection.qrels, [self.config.metric]).aggregate


class BestModel(Hook):
    """Keeps a copy of the weights with the best validation `metric`, and asks to stop after
    `patience` validations in a row without a strictly better value (a worse or equal value
    never resets the count)."""

    def __init__(self, model: nn.Module, metric: str, patience: int | None) -> None:
        self.model = model
        self.metric = metric
        self.patience = patience
        self.best: float | None = None
        self.best_step = 0
        self.stale = 0  # validations since the last improvement
        self.weights: dict[str, torch.Tensor] | None = None

    def on_validation(self, state: TrainState, metrics: dict[str, float]) -> None:
        value = metrics[self.metric]
        if self.best is not None and value <= self.best:
            self.stale += 1
            return
        self.best, self.best_step, self.stale = value, state.step, 0
        self.weights = {
            name: tensor.detach().to("cpu", copy=True)
            for name, tensor in self.model.state_dict().items()
        }

    def state_dict(self) -> dict:
        return {
            "best": self.best,
            "best_step": self.best_step,
            "stale": self.stale,
            "weights": self.weights,
        }

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step = state["best"], state["best_step"]
        self.stale, self.weights = state["stale"], state["weights"]

    def should_stop(self) -> bool:
        stop = self.patience is not None and self.stale >= self.patience
        if stop:
            logger.info(
                "Stopping early: %s has not improved on %.4f (step %d) in %d validations",
                self.metric,
                self.best,
                self.best_step,
                self.stale,
            )
        return stop

    def restore(self) -> None:
        """Put the best weights back into the model (if any validation ran)."""
        if self.weights is not None:
            self.model.load_state_dict(self.weights)
            logger.info(
                "Restored the weights of step %d (%s=%.4f)", self.best_step, self.metric, self.best
            )
