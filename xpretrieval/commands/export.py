"""`export`: encode the test split with the model into files other engines read (see
retrieval/export.py for the formats), in the run directory's `export/`."""

from __future__ import annotations

from pathlib import Path

from xpretrieval.commands.experiment import ExperimentConfig
from xpretrieval.commands.run_dir import claim_run_dir, record_config, record_environment
from xpretrieval.commands.validate import validate
from xpretrieval.core.device import resolve_device
from xpretrieval.retrieval.export import export_collection


def run_export(
    experiment: ExperimentConfig, output_dir: Path, overrides: list[str] | None = None
) -> dict[str, float]:
    """Encode the test split's documents and queries with the model into `<run dir>/export/`:
    Anserini files for a SPLADE model, `.npy` vectors for a dense one."""
    experiment = validate(experiment, "export", output_dir)
    claim_run_dir(output_dir, "export", resuming=False)
    device = resolve_device(experiment.device)
    collection = experiment.dataset.test.load()
    record_config(output_dir, experiment, overrides)
    record_environment(output_dir, "export", device, test=collection)
    model = experiment.model.build().to(device)
    folder = output_dir / "export"
    batching = experiment.evaluation.batching
    manifest = export_collection(
        model, collection, folder, experiment.export, batching, device, experiment.precision
    )
    print(f"Exported {collection.name} ({manifest['kind']}) to {folder}")
    return {"documents": float(len(collection.documents)), "queries": len(collection.queries)}
