"""`python -m xpretrieval merge CKPT CKPT... [--weights W...] [--output DIR]`: one model whose
weights are the weighted average of checkpoints of one architecture (model soups, Wortsman et
al., ICML 2022; LM-Cocktail, Xiao et al., 2023: a fine-tuned model merged with its base keeps
more of the base's zero-shot quality). The merged model is a normal checkpoint (load it with
`xpretrieval.load`, evaluate it with `evaluate model.name_or_path=DIR`); its merge.json names
the sources and weights. It carries no metrics: it was not measured."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from xpretrieval import __version__
from xpretrieval.commands.push import locate
from xpretrieval.core.checks import check_range
from xpretrieval.core.errors import NonFiniteError, UserInputError
from xpretrieval.core.io import atomic_directory, write_json
from xpretrieval.models.loading import config_for
from xpretrieval.models.quantization import QuantizationAware
from xpretrieval.models.transformer import (
    CHECKED_ON_LOAD,
    TransformerConfig,
    TransformerModel,
    can_only_be_a_path,
)

logger = logging.getLogger(__name__)

MERGE_FILE = "merge.json"
"""Written beside the merged model: the checkpoints it averages and their weights."""
# Hugging Face config fields that do not change what a loaded model computes (names, versions,
# the class that saved it, the storage dtype); fields with "dropout" in their name act only in
# training. Every other field must be equal across the checkpoints.
UNCHECKED_HF_FIELDS = ("architectures", "transformers_version", "torch_dtype", "dtype")


def merge(
    checkpoints: Sequence[str | Path], output: str | Path, weights: Sequence[float] | None = None
) -> Path:
    """Save into `output` (absent or an empty folder) the weighted average of the weights of
    `checkpoints` (saved models, run directories: their measured checkpoint, hub ids).

    `weights`: one per checkpoint, finite and >= 0, normalised to sum to 1 (default: equal).
    The checkpoints must share an architecture (model kind, the saved settings that shape it,
    transformer config, tokenizer vocabulary, parameter names and shapes); LoRA adapters are
    folded into their base weights first. Floating tensors are averaged in float32 (float64
    stays float64) and cast back to the first checkpoint's dtype; integer buffers must be
    equal. The other settings (lengths) are the first checkpoint's. Returns `output`."""
    sources = [str(checkpoint) for checkpoint in checkpoints]
    if len(sources) < 2:
        raise UserInputError(f"merge needs at least two checkpoints, got {len(sources)}")
    shares = normalised_weights(weights, len(sources))
    output = Path(output)
    _check_output(output)
    paths = [_resolve(source) for source in sources]
    configs = [config_for(path).as_saved() for path in paths]  # settings files, no weights
    for path, config in zip(paths[1:], configs[1:], strict=True):
        _check_same_settings(paths[0], configs[0], path, config)
    model = _loaded(configs[0])
    total = _weighted_sum(model, shares[0], paths[0], None)
    for path, config, share in zip(paths[1:], configs[1:], shares[1:], strict=True):
        other = _loaded(config)
        _check_same_model(paths[0], model, path, other)
        _weighted_sum(other, share, path, total)
        del other  # one source in memory besides the first and the sum
    template = model.state_dict()
    model.load_state_dict({key: value.to(template[key].dtype) for key, value in total.items()})
    with atomic_directory(output) as folder:  # complete or absent, never half-written
        model.save(folder)
        write_json(folder / MERGE_FILE, _provenance(model, sources, paths, shares, weights))
    logger.info("Merged %d checkpoints into %s", len(paths), output)
    return output


def _provenance(
    model: TransformerModel,
    sources: list[str],
    paths: list[str],
    shares: list[float],
    weights: Sequence[float] | None,
) -> dict[str, Any]:
    """merge.json: each source as given, the checkpoint it resolved to and its normalised
    weight. No metrics: the merged weights were never measured."""
    return {
        "merged": "weighted average of the weights",
        "kind": type(model.config).__name__,
        "sources": [
            {"checkpoint": path, "given": source, "weight": share}
            for source, path, share in zip(sources, paths, shares, strict=True)
        ],
        "weights_given": None if weights is None else [float(w) for w in weights],
        "xpretrieval": __version__,
    }


def normalised_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """`weights` divided by their sum (equal weights when None), or one line saying which
    weight is wrong: one per checkpoint, each finite and >= 0, summing to more than 0."""
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise UserInputError(
            f"weights: {len(weights)} weights for {count} checkpoints; give one per checkpoint"
        )
    for index, weight in enumerate(weights):
        try:
            check_range(f"weights[{index}]", weight, at_least=0)
        except ValueError as error:
            raise UserInputError(str(error)) from None
    total = sum(weights)
    if total <= 0:
        raise UserInputError(
            "weights: they sum to 0; give at least one checkpoint a positive weight"
        )
    return [weight / total for weight in weights]


def _check_output(output: Path) -> None:
    """The merged model goes into a new folder (or an empty one): nothing is overwritten."""
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserInputError(
            f"--output {output}: exists and is not an empty folder; choose a new folder"
        )


def _resolve(source: str) -> str:
    """The checkpoint a local folder names (a run directory: the checkpoint it was measured
    with, else its last one; push's rule); a name that can only be a path (absolute, ./, ~,
    more than one slash) must exist; anything else is a hub id, left to the loader."""
    if Path(source).exists():
        return str(locate(Path(source))[0])
    if can_only_be_a_path(source):
        raise UserInputError(
            f"{source}: no such folder; expected a saved model, a run directory or a hub id"
        )
    return source


def _check_same_settings(
    first: str, first_config: TransformerConfig, path: str, config: TransformerConfig
) -> None:
    """The model kind and the saved settings that shape the model or its inputs (pooling,
    prompts...) must be the first checkpoint's; LoRA is not one: adapters are folded first."""
    if type(config) is not type(first_config):
        raise UserInputError(
            f"{path}: a {type(config).__name__} model, but {first} is a "
            f"{type(first_config).__name__} model; merge checkpoints of one architecture"
        )
    names = [n for n in (*config.architecture_fields, *CHECKED_ON_LOAD) if n != "lora_rank"]
    names += ["quantization"] if isinstance(config, QuantizationAware) else []
    for name in names:
        mine, theirs = getattr(config, name), getattr(first_config, name)
        if mine != theirs:
            raise UserInputError(
                f"{path}: saved with {name}={_show(mine)}, but {first} with "
                f"{name}={_show(theirs)}; merge checkpoints of one architecture"
            )


def _loaded(config: TransformerConfig) -> TransformerModel:
    """The model on the CPU, its LoRA adapters (if any) folded into the weights, so that the
    weights averaged are the ones the model computes with."""
    model = config.build()
    if model.config.lora_rank:
        model.merge_lora()
    return model


def _check_same_model(
    first: str, first_model: TransformerModel, path: str, model: TransformerModel
) -> None:
    """Transformer config, tokenizer vocabulary and parameter names and shapes equal to the
    first checkpoint's, or one line naming `path` and the first difference."""
    ours, theirs = first_model.encoder_folders(), model.encoder_folders()
    for folder, encoder in theirs.items():
        mine, reference = _hf_settings(encoder.config), _hf_settings(ours[folder].config)
        for key in sorted(mine.keys() | reference.keys()):
            if mine.get(key) != reference.get(key):
                raise UserInputError(
                    f"{path}: its transformer config has {key}={mine.get(key)}, {first}'s "
                    f"{reference.get(key)}; merge checkpoints of one architecture"
                )
    vocabulary, reference_vocabulary = (
        model.tokenizer.get_vocab(),
        first_model.tokenizer.get_vocab(),
    )
    if vocabulary != reference_vocabulary:
        raise UserInputError(
            f"{path}: its tokenizer's vocabulary ({len(vocabulary)} tokens) differs from "
            f"{first}'s ({len(reference_vocabulary)} tokens); merge checkpoints of one tokenizer"
        )
    state, reference_state = model.state_dict(), first_model.state_dict()
    unshared = sorted(state.keys() ^ reference_state.keys())
    if unshared:
        where = path if unshared[0] in state else first
        raise UserInputError(
            f"{path}: parameter {unshared[0]} is only in {where}; "
            "merge checkpoints of one architecture"
        )
    for key, tensor in state.items():
        if tensor.shape != reference_state[key].shape:
            raise UserInputError(
                f"{path}: parameter {key} has shape {list(tensor.shape)}, {first}'s "
                f"{list(reference_state[key].shape)}; merge checkpoints of one architecture"
            )


def _hf_settings(config: Any) -> dict[str, Any]:
    """A Hugging Face config's fields that define what the model computes."""
    return {
        key: value
        for key, value in config.to_dict().items()
        if not key.startswith("_") and key not in UNCHECKED_HF_FIELDS and "dropout" not in key
    }


@torch.no_grad()
def _weighted_sum(
    model: TransformerModel, share: float, path: str, total: dict[str, Tensor] | None
) -> dict[str, Tensor]:
    """`total` plus `share` times each floating tensor of `model` (in float32, float64 kept);
    its integer and boolean buffers must equal those in `total`. `total` None: start one."""
    total = {} if total is None else total
    start = not total
    for key, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            if start:
                total[key] = tensor.clone()
            elif not torch.equal(tensor, total[key]):
                raise UserInputError(
                    f"{path}: integer buffer {key} differs from the first checkpoint's; "
                    "merge checkpoints of one architecture"
                )
            continue
        if not torch.isfinite(tensor).all():
            raise NonFiniteError(f"{path}: parameter {key} holds nan or inf; nothing was merged")
        dtype = torch.float64 if tensor.dtype == torch.float64 else torch.float32
        added = tensor.to(dtype) * share
        total[key] = added if start else total[key] + added
    return total


def _show(value: object) -> str:
    return str(getattr(value, "value", value)).lower()


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m xpretrieval merge", description=__doc__)
    parser.add_argument(
        "checkpoints",
        nargs="+",
        metavar="CKPT",
        help="saved models, run directories or hub ids (two or more)",
    )
    parser.add_argument(
        "--weights",
        type=float,
        nargs="+",
        metavar="W",
        help="one per checkpoint, normalised (default: equal)",
    )
    parser.add_argument(
        "--output", type=Path, metavar="DIR", help="the merged model's folder (outputs/merge/…)"
    )
    options = parser.parse_args(args)
    output = options.output or Path("outputs/merge") / time.strftime("%Y-%m-%d_%H-%M-%S")
    merge(options.checkpoints, output, options.weights)
    print(f"Merged model: {output}")
