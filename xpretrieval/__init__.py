"""xpretrieval: neural information-retrieval experiments from typed configuration.

The Python API (see the README's "From Python"): `load` a model, `Collection.from_beir` /
`from_ir_datasets`, `search`, `evaluate`; `configure` and `train` an experiment as the CLI does;
`mteb_model`: a model as `mteb.evaluate` runs it.
The names are imported on first use, so `import xpretrieval` stays cheap (no torch, no Hydra).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "Collection": "xpretrieval.data.collection",
    "ExperimentConfig": "xpretrieval.commands.experiment",
    "configure": "xpretrieval.api",
    "evaluate": "xpretrieval.api",
    "load": "xpretrieval.models.loading",
    "mteb_model": "xpretrieval.evaluation.mteb",
    "search": "xpretrieval.api",
    "train": "xpretrieval.api",
    "train_from_overrides": "xpretrieval.api",
}

__all__ = [
    "Collection",
    "ExperimentConfig",
    "configure",
    "evaluate",
    "load",
    "mteb_model",
    "search",
    "train",
    "train_from_overrides",
]

if TYPE_CHECKING:
    from xpretrieval.api import configure, evaluate, search, train, train_from_overrides
    from xpretrieval.commands.experiment import ExperimentConfig
    from xpretrieval.data.collection import Collection
    from xpretrieval.evaluation.mteb import mteb_model
    from xpretrieval.models.loading import load


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'xpretrieval' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
