"""`python -m xpretrieval push RUN_OR_CHECKPOINT REPO_ID`: upload a trained model to the Hugging
Face Hub (huggingface_hub) with a generated model card: the model kind, base checkpoint,
training config, the metrics measured with exactly the uploaded weights (the checkpoint's own
metrics.json; none for an intermediate checkpoint) and the command that reproduces it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import HfApi, ModelCard, ModelCardData

from xpretrieval.commands.resume import last_checkpoint
from xpretrieval.core.errors import UserInputError
from xpretrieval.core.io import read_yaml
from xpretrieval.models.loading import config_for

KIND_TAGS = {
    "Dense": ["sentence-transformers", "sentence-similarity", "dense-retrieval"],
    "Splade": ["sentence-transformers", "sparse-encoder", "splade", "learned-sparse-retrieval"],
    "SparseEmbed": ["sparse-embed", "learned-sparse-retrieval"],
    "ColBERT": ["colbert", "late-interaction"],
    "CrossEncoder": ["sentence-transformers", "cross-encoder", "reranker"],
}


def locate(path: Path) -> tuple[Path, Path | None]:
    """(the checkpoint to upload, the run directory it came from, if known): a run directory
    gives the checkpoint its metrics were measured with (else its last complete one); a
    checkpoint `<run>/checkpoints/step-N` gives its run."""
    if (path / "checkpoints").is_dir():
        measured = _read_json(path / "metrics.json").get("checkpoint")
        if measured and Path(measured).is_dir():
            return Path(measured), path
        return last_checkpoint(path), path
    if not path.is_dir():
        raise UserInputError(f"{path}: no such folder (a run directory or a checkpoint)")
    run = path.parent.parent
    return path, run if (run / "config.yaml").is_file() else None


def model_card(checkpoint: Path, run: Path | None) -> ModelCard:
    """The card: metadata for the Hub's search, then what the model is and how it was made."""
    config = config_for(str(checkpoint))
    kind = type(config).__name__
    trained = read_yaml(run / "config.yaml") if run is not None else {}
    base = trained.get("model", {}).get("name_or_path")
    metrics = _read_json(checkpoint / "metrics.json")  # of exactly these weights, or none
    environment = _read_json(run / "environment.json") if run is not None else {}
    dataset = metrics.get("dataset")
    data = ModelCardData(
        library_name="sentence-transformers"
        if "sentence-transformers" in KIND_TAGS[kind]
        else None,
        base_model=base if base and not Path(base).exists() else None,
        tags=["xpretrieval", *KIND_TAGS[kind]],
        datasets=[dataset.split("/")[0]] if dataset else None,
    )
    lines = [
        f"# {kind} model trained with xpretrieval",
        "",
        f"A `{kind}` retrieval model"
        + (f" fine-tuned from `{base}`" if base else "")
        + ". Load it with `xpretrieval.load(<repo id>)`"
        + (
            " or with sentence-transformers." if "sentence-transformers" in KIND_TAGS[kind] else "."
        ),
    ]
    if metrics.get("aggregate"):
        lines += ["", f"## Results on {dataset} ({metrics.get('queries')} queries)", ""]
        lines += ["| measure | value |", "| --- | --- |"]
        lines += [f"| {name} | {value:.4f} |" for name, value in metrics["aggregate"].items()]
    command = environment.get("command")  # argv: "<path>/__main__.py train", overrides...
    if command:
        overrides = [str(c) for c in command[1:] if not str(c).startswith("hydra.run.dir=")]
        shown = " ".join(["python -m xpretrieval", str(command[0]).split()[-1], *overrides])
        lines += ["", "## Reproduce", "", "```bash", shown, "```"]
    if trained:
        lines += ["", "## Training configuration", "", "```yaml", yaml.safe_dump(trained).strip()]
        lines += ["```"]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def push(path: Path, repo_id: str, private: bool = False) -> str:
    """Create `repo_id` if needed and upload the checkpoint with its card; returns its URL."""
    checkpoint, run = locate(path)
    card = model_card(checkpoint, run)
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=checkpoint,
            ignore_patterns=["training_state.pt"],  # optimiser state: resuming, not using
            commit_message=f"Upload {checkpoint.name} with xpretrieval",
        )
        api.upload_file(
            path_or_fileobj=str(card).encode("utf-8"), path_in_repo="README.md", repo_id=repo_id
        )
    except OSError as error:  # offline, unreachable, no token, no permission
        raise UserInputError(
            f"push {repo_id}: the Hugging Face Hub refused or could not be reached "
            f"({type(error).__name__}: {str(error).splitlines()[0][:200]}); check the network, "
            "HF_HUB_OFFLINE and `hf auth login`"
        ) from None
    return f"https://huggingface.co/{repo_id}"


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m xpretrieval push", description=__doc__)
    parser.add_argument("path", type=Path, help="a run directory or one of its checkpoints")
    parser.add_argument("repo_id", help="owner/name on the Hugging Face Hub")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--card-only", action="store_true", help="print the card, upload nothing")
    options = parser.parse_args(args)
    if options.card_only:
        print(model_card(*locate(options.path)))
        return
    print(push(options.path, options.repo_id, options.private))


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
