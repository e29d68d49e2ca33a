"""Long documents' passages (`dataset.<split>.passages`) checked against the rest of an
experiment before any weights load: a window must fit the model's `doc_max_length`, and what
reads a split with passages must be able to read them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xpretrieval.core.errors import ConfigError
from xpretrieval.data.passages import Passages, PositivePassage
from xpretrieval.data.records import PointwiseRecord
from xpretrieval.models.base import ModelConfig, Ranker
from xpretrieval.models.transformer import TransformerConfig

if TYPE_CHECKING:
    from xpretrieval.commands.experiment import ExperimentConfig

ROLES = ("train", "dev", "test")


def check_passages(experiment: ExperimentConfig, command: str) -> None:
    """Every split's passages against the model, the sampler and the command."""
    dataset, model = experiment.dataset, experiment.model
    for role in ROLES:
        split = getattr(dataset, role)
        if split is None or not split.passages.enabled:
            continue
        key = f"dataset.{role}.passages"
        check_window_fits(key, split.passages, model)
        if model.is_kind(Ranker):
            raise ConfigError(
                f"{key}: a {type(model).__name__} model ranks whole documents itself, never "
                f"their passages; drop {key}.length or use a bi-encoder"
            )
        if role == "test" and command == "export":
            raise ConfigError(
                f"{key}: export writes one representation per document of dataset.test; drop "
                f"{key}.length to export"
            )
        if role == "test" and experiment.suite.enabled:
            raise ConfigError(
                f"{key}: with suite.collections, the suite is evaluated instead of "
                f"dataset.test, so its passages would go unused; drop {key}.length"
            )
    train = dataset.train
    best = train is not None and train.passages.positive is PositivePassage.best
    if command == "train" and best and issubclass(experiment.sampler.record, PointwiseRecord):
        raise ConfigError(
            f"dataset.train.passages.positive=best: {type(experiment.sampler).__name__} records "
            "carry labelled documents, not a positive to choose a passage of; use "
            "positive=first, or a sampler with positives (sampler=batchwise)"
        )


def check_window_fits(key: str, passages: Passages, model: ModelConfig) -> None:
    """A window of `length` words is at least `length` tokens: refuse one that the model's
    `doc_max_length` would cut whatever its words (the share cut of the others is reported
    when they are encoded)."""
    if not isinstance(model, TransformerConfig) or passages.length is None:
        return
    if passages.length > model.doc_max_length:
        raise ConfigError(
            f"{key}.length={passages.length}: a window of {passages.length} words is at least "
            f"as many tokens, more than model.doc_max_length={model.doc_max_length} keeps; "
            f"lower {key}.length (a word is about 1.3 tokens in English: e.g. "
            f"{model.doc_max_length * 3 // 4}) or raise model.doc_max_length"
        )
