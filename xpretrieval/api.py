"""The Python API: what the command line does, as functions on objects with defaults.

`configure` composes the same YAML presets and overrides as `python -m xpretrieval`, `train`
runs an `ExperimentConfig` (built in Python or composed) through the same code as the CLI;
`search` and `evaluate` rank a collection with a loaded model and measure the run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from xpretrieval.commands.compatibility import check_index_serves
from xpretrieval.commands.experiment import (
    ExperimentConfig,
    load_experiment,
    without_unset_train_split,
)
from xpretrieval.commands.resume import with_saved_overrides
from xpretrieval.commands.rounds import run_train_rounds
from xpretrieval.commands.validate import validate
from xpretrieval.core.config import config_dir
from xpretrieval.core.device import Precision
from xpretrieval.data.collection import Collection
from xpretrieval.data.records import Qrels
from xpretrieval.data.run import Run
from xpretrieval.evaluation.measures import Metrics, compute_metrics
from xpretrieval.models.base import BiEncoder, Ranker, SparseBiEncoder
from xpretrieval.models.encoding import Batching
from xpretrieval.models.transformer import TransformerModel
from xpretrieval.retrieval.index import ExactIndex, IndexConfig, Inverted
from xpretrieval.retrieval.retrieve import retrieve

DEFAULT_METRICS = ("nDCG@10", "RR@10", "R@100")


def configure(overrides: Sequence[str] = (), command: str = "train") -> ExperimentConfig:
    """The experiment that `python -m xpretrieval <command> <overrides>` would run, checked
    as the command checks it (components, resume rules) before any model loads; with
    `resume=<run>`, the run's own overrides come first, as on the command line."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(command, with_saved_overrides(command, list(overrides)))
    if command != "train":
        cfg = without_unset_train_split(cfg)
    return validate(load_experiment(cfg), command)


def train(experiment: ExperimentConfig, output_dir: str | Path | None = None) -> dict[str, float]:
    """Train and evaluate `experiment` as `python -m xpretrieval train` does; its run directory
    is `output_dir` (default: `outputs/<date>/<time>`, as the CLI's). Returns the test metrics
    (of the last round, with `experiment.rounds` > 1)."""
    output_dir = default_run_dir() if output_dir is None else output_dir
    return run_train_rounds(experiment, Path(output_dir))


def default_run_dir() -> Path:
    """`outputs/<date>/<time>`, as Hydra names the CLI's run directories."""
    return Path("outputs") / time.strftime("%Y-%m-%d") / time.strftime("%H-%M-%S")


def train_from_overrides(
    overrides: Sequence[str], output_dir: str | Path | None = None
) -> dict[str, float]:
    """`train(configure(overrides))`, the overrides recorded for `resume` as the CLI does (with
    `resume=<run>`, the run's own overrides first, so that the next resume has them too)."""
    output_dir = default_run_dir() if output_dir is None else output_dir
    overrides = with_saved_overrides("train", list(overrides))
    return run_train_rounds(configure(overrides), Path(output_dir), overrides)


def search(
    model: BiEncoder | Ranker,
    collection: Collection,
    k: int = 100,
    index: IndexConfig | None = None,
    batch_size: int = 32,
    precision: Precision = Precision.auto,
    max_batch_tokens: int | None = None,
) -> Run:
    """The k best documents of every query of `collection`: `{query id: [(doc id, score)]}`.
    The default index is an inverted index for sparse models and exact search otherwise
    (settings an index leaves to the model, a quantised index's precision, are the model's);
    texts are encoded `batch_size` at a time, at most `max_batch_tokens` padded tokens."""
    if index is None:
        index = Inverted() if isinstance(model, SparseBiEncoder) else ExactIndex()
    if isinstance(model, BiEncoder):
        check_index_serves(index, type(model), type(model).__name__)
    if isinstance(model, TransformerModel):  # what the index leaves to the model's settings
        index = index.fitted(model.config)
    device = model.device if isinstance(model, BiEncoder) else torch.device("cpu")
    batching = Batching(batch_size, max_batch_tokens)
    return retrieve(model, collection, index, k, batching, device, precision).run


def evaluate(run: Run, qrels: Qrels, metrics: str | Sequence[str] = DEFAULT_METRICS) -> Metrics:
    """ir-measures' values of `run` against `qrels`: `.aggregate` (mean over the judged
    queries) and `.per_query`; `metrics` is a list of measures, or one ("nDCG@10")."""
    # a string is a sequence too: list("nDCG@10") would measure 'n', 'D', ...
    return compute_metrics(run, qrels, [metrics] if isinstance(metrics, str) else list(metrics))
