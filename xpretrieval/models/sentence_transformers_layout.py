"""sentence-transformers' folder layout, written beside a saved model so that
`SentenceTransformer(dir)` / `SparseEncoder(dir)` load it as it is, and read from folders that
sentence-transformers saved, so that they load here without an xpretrieval file.

The layout is a few small JSON files around the Hugging Face model files: `modules.json`
lists the modules (transformer, pooling, normalisation), each configured in its own folder.
Module type names are the classic ones (`sentence_transformers.models.*`), which every
sentence-transformers release from 2 (dense) and 5 (sparse) on loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor

from xpretrieval.core.errors import ConfigError

MODULES_FILE = "modules.json"
TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"
ROUTER = "sentence_transformers.models.Router"
MLM_TRANSFORMER = "sentence_transformers.sparse_encoder.models.MLMTransformer"
SPLADE_POOLING = "sentence_transformers.sparse_encoder.models.SpladePooling"
SPARSE_STATIC = "sentence_transformers.sparse_encoder.models.SparseStaticEmbedding"
SETTINGS_FILE = "config_sentence_transformers.json"
POOLING_FLAGS = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "max": "pooling_mode_max_tokens",
    "last": "pooling_mode_lasttoken",
}
ST_POOLING_NAMES = {"lasttoken": "last"}  # sentence-transformers 6's names that differ


def write_dense_layout(
    folder: Path,
    hidden_size: int,
    pooling: str,
    normalize: bool,
    lengths: dict[str, int],
    prompts: dict[str, str],
) -> None:
    """Transformer(s) + Pooling (+ Normalize): what `SentenceTransformer(folder)` loads.
    `lengths`: {"": max length} for one encoder at the folder's root, or {"query": …,
    "document": …} for separate encoders in those subfolders (a Router); `prompts`: the
    "query" and "document" prompts that `encode_query` / `encode_document` prepend."""
    modules = [_input_module(folder, TRANSFORMER, lengths), _module(1, "1_Pooling", POOLING)]
    pooling_config: dict[str, Any] = {"word_embedding_dimension": hidden_size}
    pooling_config.update({flag: mode == pooling for mode, flag in POOLING_FLAGS.items()})
    pooling_config["pooling_mode_mean_sqrt_len_tokens"] = False
    _write(folder / "1_Pooling" / "config.json", pooling_config)
    if normalize:
        modules.append(_module(2, "2_Normalize", NORMALIZE))
        (folder / "2_Normalize").mkdir(exist_ok=True)
    _write(folder / MODULES_FILE, modules)
    _write_settings(folder, "SentenceTransformer", "cosine" if normalize else "dot", prompts)


def write_splade_layout(
    folder: Path, vocabulary: int, pooling: str, lengths: dict[str, int], prompts: dict[str, str]
) -> None:
    """MLMTransformer(s) + SpladePooling: what `SparseEncoder(folder)` loads (`lengths` and
    `prompts` as in `write_dense_layout`)."""
    modules = [
        _input_module(folder, MLM_TRANSFORMER, lengths),
        _module(1, "1_SpladePooling", SPLADE_POOLING),
    ]
    _write(
        folder / "1_SpladePooling" / "config.json",
        {
            "pooling_strategy": pooling,
            "activation_function": "relu",
            "word_embedding_dimension": vocabulary,
        },
    )
    _write(folder / MODULES_FILE, modules)
    _write_settings(folder, "SparseEncoder", "dot", prompts)


def write_inference_free_layout(
    folder: Path,
    query_weights: Tensor,
    pooling: str,
    document_length: int,
    prompts: dict[str, str],
    tokenizer: Any,
) -> None:
    """A Router of `SparseStaticEmbedding` (queries: `query_weights` per token) and
    MLMTransformer + SpladePooling (documents, whose Hugging Face files `document/` holds):
    what `SparseEncoder(folder)` loads as an inference-free SPLADE model."""
    _write(folder / MODULES_FILE, [_module(0, "", ROUTER)])
    router = {
        "types": {"query": SPARSE_STATIC, "document": MLM_TRANSFORMER, "pooling": SPLADE_POOLING},
        "structure": {"query": ["query"], "document": ["document", "pooling"]},
        "parameters": {"default_route": "document", "allow_empty_key": True},
    }
    _write(folder / "router_config.json", router)
    _write(folder / "query" / "config.json", {"frozen": False})
    save_file({"weight": query_weights.contiguous()}, str(folder / "query" / "model.safetensors"))
    tokenizer.save_pretrained(folder / "query")
    _write(folder / "document" / "sentence_bert_config.json", {"max_seq_length": document_length})
    _write(
        folder / "pooling" / "config.json",
        {
            "pooling_strategy": pooling,
            "activation_function": "relu",
            "word_embedding_dimension": len(query_weights),
        },
    )
    _write_settings(folder, "SparseEncoder", "dot", prompts)


def _read_inference_free(folder: Path, router_path: str, router: dict[str, Any]) -> dict[str, Any]:
    """`read_layout` of a Router sending queries to a `SparseStaticEmbedding` and documents
    to MLMTransformer + SpladePooling."""
    types = {name: _short(kind) for name, kind in router.get("types", {}).items()}
    structure = router.get("structure", {})
    query = structure.get("query", [])
    document = [types.get(name) for name in structure.get("document", [])]
    if [types.get(name) for name in query] != ["SparseStaticEmbedding"] or document != [
        "MLMTransformer",
        "SpladePooling",
    ]:
        raise ConfigError(
            f"{folder / router_path / 'router_config.json'}: expected SparseStaticEmbedding for "
            "queries and MLMTransformer + SpladePooling for documents"
        )
    mlm, pooling = (str(Path(router_path) / name) for name in structure["document"])
    fields: dict[str, Any] = {"kind": "inference_free_splade", "encoders": [mlm]}
    fields["pooling"] = _read(folder / pooling / "config.json").get("pooling_strategy", "max")
    fields["heads"] = {"query_weights": str(Path(router_path) / query[0] / "model.safetensors")}
    length = _max_length(folder / mlm)
    return fields if length is None else {**fields, "doc_max_length": length}


def _write_settings(folder: Path, kind: str, similarity: str, prompts: dict[str, str]) -> None:
    settings: dict[str, Any] = {"model_type": kind, "similarity_fn_name": similarity}
    given = {name: prompt for name, prompt in prompts.items() if prompt}
    if given:
        settings.update(prompts=given, default_prompt_name=None)
    _write(folder / SETTINGS_FILE, settings)


def _read_prompts(folder: Path) -> dict[str, str]:
    """The query and document prompts of a sentence-transformers folder, as config fields
    (its "document" prompt may be named "passage" or "corpus", as `encode_document` accepts)."""
    settings = folder / SETTINGS_FILE
    prompts = _read(settings).get("prompts") or {} if settings.is_file() else {}
    fields = {"query_prompt": prompts.get("query", "")}
    fields["document_prompt"] = next(
        (prompts[name] for name in ("document", "passage", "corpus") if name in prompts), ""
    )
    return {name: prompt for name, prompt in fields.items() if prompt}


def _input_module(folder: Path, transformer: str, lengths: dict[str, int]) -> dict[str, Any]:
    """Module 0: the transformer at the folder's root, or a Router that sends queries and
    documents to the transformers in their subfolders; each with its maximum length."""
    for side, length in lengths.items():
        _write(folder / side / "sentence_bert_config.json", {"max_seq_length": length})
    if list(lengths) == [""]:
        return _module(0, "", transformer)
    router = {
        "types": {side: transformer for side in lengths},
        "structure": {side: [side] for side in lengths},
        "parameters": {"default_route": "document", "allow_empty_key": True},
    }
    _write(folder / "router_config.json", router)
    return _module(0, "", ROUTER)


def layout_folder(name_or_path: str) -> Path | None:
    """The folder holding a model's sentence-transformers files: a local folder as it is, a
    hub id's cached snapshot (its modules.json and module configs fetched through the Hugging
    Face cache); None for a hub id without modules.json."""
    folder = Path(name_or_path)
    if folder.is_dir():
        return folder
    from transformers.utils import cached_file

    def fetch(filename: str) -> str | None:
        return cached_file(
            name_or_path,
            filename,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )

    try:
        modules_file = fetch(MODULES_FILE)
    except OSError:  # not a repository id at all: the model loader says so
        return None
    if modules_file is None:
        return None
    for module in json.loads(Path(modules_file).read_text(encoding="utf-8")):
        for name in ("config.json", "sentence_bert_config.json"):
            fetch(f"{module['path']}/{name}".lstrip("/"))
    return Path(modules_file).parent


def model_layout(name_or_path: str) -> dict[str, Any] | None:
    """`read_layout` of the folder (or hub snapshot) `layout_folder` finds; None without one."""
    folder = layout_folder(name_or_path)
    return None if folder is None else read_layout(folder)


def read_layout(folder: Path) -> dict[str, Any] | None:
    """What a sentence-transformers folder says about the model, as model config fields plus
    `kind` ("dense" or "splade") and `encoders` (the subfolders of the Hugging Face files:
    one, or a query and a document one for a Router); None without modules.json. Modules
    xpretrieval cannot reproduce (a dense projection, another pooling) are a ConfigError."""
    modules_file = folder / MODULES_FILE
    if not modules_file.is_file():
        return None
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    types = [_short(module["type"]) for module in modules]
    paths = {_short(module["type"]): module["path"] for module in modules}
    transformer = next((t for t in types if t in ("Transformer", "MLMTransformer", "Router")), None)
    if transformer is None:
        raise ConfigError(f"{modules_file}: no Transformer module; not a transformer model")
    if transformer == "Router":
        router = _read(folder / paths["Router"] / "router_config.json")
        static = "SparseStaticEmbedding" in map(_short, router.get("types", {}).values())
        if static:
            fields = _read_inference_free(folder, paths["Router"], router)
            fields.update(_read_prompts(folder))
            return _only(fields, types, {"Router"}, modules_file)
    fields = _encoders(folder, paths[transformer], transformer == "Router")
    fields.update(_read_prompts(folder))
    if "SpladePooling" in types:
        pooling = _read(folder / paths["SpladePooling"] / "config.json")
        if pooling.get("activation_function", "relu") != "relu":
            raise ConfigError(
                f"{folder}: SpladePooling activation {pooling['activation_function']!r}; "
                "xpretrieval's SPLADE computes log(1 + relu(x)) only"
            )
        fields.update(kind="splade", pooling=pooling.get("pooling_strategy", "max"))
        return _only(fields, types, {transformer, "SpladePooling"}, modules_file)
    if "Pooling" in types:
        pooling = _read(folder / paths["Pooling"] / "config.json")
        if "pooling_mode" in pooling:  # sentence-transformers 6: "cls", or a list of modes
            given = pooling["pooling_mode"]
            modes = [given] if isinstance(given, str) else list(given)
            modes = [ST_POOLING_NAMES.get(mode, mode) for mode in modes]
        else:  # earlier releases: one flag per mode
            modes = [mode for mode, flag in POOLING_FLAGS.items() if pooling.get(flag)]
            modes += ["mean_sqrt_len"] if pooling.get("pooling_mode_mean_sqrt_len_tokens") else []
        if len(modes) != 1 or modes[0] not in POOLING_FLAGS:
            raise ConfigError(
                f"{folder / paths['Pooling'] / 'config.json'}: pooling must be exactly one of "
                "cls, mean, max or lasttoken for xpretrieval's Dense model"
            )
        fields.update(kind="dense", pooling=modes[0], normalize="Normalize" in types)
        return _only(fields, types, {transformer, "Pooling", "Normalize"}, modules_file)
    raise ConfigError(f"{modules_file}: neither a Pooling nor a SpladePooling module")


def _encoders(folder: Path, path: str, routed: bool) -> dict[str, Any]:
    """`encoders` and the lengths and sharing of the transformer module at `path`."""
    if not routed:
        length = _max_length(folder / path)
        return {"encoders": [path], **({} if length is None else {"doc_max_length": length})}
    router = _read(folder / path / "router_config.json")
    structure = router.get("structure", {})
    if set(structure) != {"query", "document"} or any(len(v) != 1 for v in structure.values()):
        raise ConfigError(
            f"{folder / path / 'router_config.json'}: expected one query and one document "
            "transformer (separate encoders); other routes are not xpretrieval models"
        )
    query, document = (str(Path(path) / structure[side][0]) for side in ("query", "document"))
    fields: dict[str, Any] = {"encoders": [query, document], "shared": False}
    for name, sub in (("query_max_length", query), ("doc_max_length", document)):
        length = _max_length(folder / sub)
        if length is not None:
            fields[name] = length
    return fields


def _max_length(transformer_folder: Path) -> int | None:
    """The transformer module's maximum sequence length: `max_seq_length` of its
    sentence_bert_config.json, or (sentence-transformers 6) the tokenizer's model_max_length."""
    settings = _read(transformer_folder / "sentence_bert_config.json")
    if "max_seq_length" in settings:
        return int(settings["max_seq_length"])
    tokenizer = _read(transformer_folder / "tokenizer_config.json")
    length = tokenizer.get("model_max_length")
    return int(length) if isinstance(length, int) and length < 1_000_000 else None


def _only(
    fields: dict[str, Any], types: list[str], known: set[str], modules_file: Path
) -> dict[str, Any]:
    others = [t for t in types if t not in known]
    if others:
        raise ConfigError(
            f"{modules_file} lists {', '.join(others)}, which xpretrieval's models do not have; "
            "load it with sentence-transformers instead"
        )
    return fields


def _short(type_name: str) -> str:
    """`sentence_transformers.models.Pooling` and `...modules.pooling.Pooling` -> `Pooling`."""
    return type_name.rsplit(".", 1)[-1]


def _module(idx: int, path: str, type_name: str) -> dict[str, Any]:
    return {"idx": idx, "name": str(idx), "path": path, "type": type_name}


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
