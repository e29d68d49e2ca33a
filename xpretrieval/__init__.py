"""xpretrieval: neural information-retrieval experiments from typed configuration.

The Python API (see the README's "From Python"): `load` a model, `Collection.from_beir` /
`from_ir_datasets`, `search`, `evaluate`; `configure` and `train` an experiment as the CLI does.
"""

__version__ = "0.1.0"

from xpretrieval.api import (  # noqa: E402
    configure,
    evaluate,
    search,
    train,
    train_from_overrides,
)
from xpretrieval.data.collection import Collection  # noqa: E402
from xpretrieval.experiment import ExperimentConfig  # noqa: E402
from xpretrieval.models.loading import load  # noqa: E402

__all__ = [
    "Collection",
    "ExperimentConfig",
    "configure",
    "evaluate",
    "load",
    "search",
    "train",
    "train_from_overrides",
]
