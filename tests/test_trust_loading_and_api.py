"""No silently wrong model or run, and no traceback from deep inside a library: a checkpoint
without its tokenizer files or with a damaged model file, API calls with nothing to do,
export scales that overflow or erase the impacts, faiss indexes that cannot train on the
collection and damaged encoding shards end correct or with one line naming what to fix."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import xpretrieval
from tests.conftest import TINY_BEIR, tiny_overrides
from tests.test_cli import cli
from xpretrieval.core.device import Precision
from xpretrieval.core.distributed import World
from xpretrieval.core.errors import ConfigError
from xpretrieval.data.collection import Collection
from xpretrieval.models import ColBERT, Dense, Splade
from xpretrieval.models.encoding import Batching
from xpretrieval.models.transformer import COMPONENT_FILE
from xpretrieval.retrieval.export import ExportConfig, export_collection
from xpretrieval.retrieval.shards import encode_shards, read_shards, shard_path

CPU = torch.device("cpu")
ENCODING = (Batching(64), CPU, Precision.fp32)  # one batch: the first names the range
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")


@pytest.fixture(scope="module")
def saved_dense(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Dense model saved by `model.save`, as a training run's checkpoint holds it."""
    folder = tmp_path_factory.mktemp("saved") / "model"
    Dense(name_or_path=str(tiny_model_dir), query_max_length=16, doc_max_length=32).build().save(
        folder
    )
    return folder


@pytest.fixture(scope="module")
def splade(masked_lm_dir: Path) -> Splade:
    return Splade(name_or_path=str(masked_lm_dir), doc_max_length=32).build()


@pytest.fixture(scope="module")
def test_collection() -> Collection:
    return Collection.from_beir(TINY_BEIR, "test")


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "model"))


def without_tokenizer(folder: Path, tmp_path: Path) -> Path:
    copy = copy_of(folder, tmp_path)
    for name in TOKENIZER_FILES:
        (copy / name).unlink(missing_ok=True)
    return copy


LOADERS = {
    "load": lambda folder: xpretrieval.load(folder, device="cpu"),
    "config": lambda folder: Dense(name_or_path=str(folder), doc_max_length=32).build(),
}


# 1. a checkpoint's tokenizer


@pytest.mark.parametrize("loader", LOADERS.values(), ids=LOADERS.keys())
def test_a_checkpoint_without_its_tokenizer_files_is_refused(loader, saved_dense, tmp_path):
    folder = without_tokenizer(saved_dense, tmp_path)
    with pytest.raises(ConfigError, match=rf"{folder} has no tokenizer files .*tokenizer\.json"):
        loader(folder)


@pytest.mark.parametrize("loader", LOADERS.values(), ids=LOADERS.keys())
def test_saved_checkpoints_and_model_folders_still_load_their_own_tokenizer(
    loader, saved_dense, tiny_model_dir
):
    for folder in (saved_dense, tiny_model_dir):
        model = loader(folder)
        ids = model.tokenizer("honey bees")["input_ids"]
        assert model.tokenizer.unk_token_id not in ids


def test_the_cli_refuses_a_checkpoint_without_its_tokenizer_in_one_line(saved_dense, tmp_path):
    folder = without_tokenizer(saved_dense, tmp_path)
    run_dir = tmp_path / "run"
    result = cli("evaluate", *tiny_overrides(folder), f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert f"{folder} has no tokenizer files" in result.stderr
    assert not (run_dir / "metrics.json").exists()


def test_a_tokenizer_larger_than_the_embedding_table_is_refused(saved_dense, tmp_path):
    from transformers import AutoTokenizer

    folder = copy_of(saved_dense, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_tokens([f"extra{i}" for i in range(5)])
    tokenizer.save_pretrained(folder)
    for loader in LOADERS.values():
        with pytest.raises(ConfigError, match=r"the tokenizer has \d+ tokens but .* \d+ rows"):
            loader(folder)


# 2. a damaged xpretrieval_model.yaml


def damaged_files(text: str) -> dict[str, str]:
    lines = text.splitlines(keepends=True)
    return {
        "mid-line": text[: text.index("query_max_length") + 5],  # a key without its colon
        "last-lines-lost": "".join(lines[:-2]),  # the kind's own fields are gone
        "unclosed-bracket": text.replace("config_overrides: {}", "config_overrides: {"),
        "bad-value": text.replace("normalize: true", "normalize: tr"),
        "a-list": "- name_or_path\n",
    }


DAMAGES = ("mid-line", "last-lines-lost", "unclosed-bracket", "bad-value", "a-list")


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("loader", LOADERS.values(), ids=LOADERS.keys())
def test_a_damaged_model_file_is_refused_naming_it(loader, damage, saved_dense, tmp_path):
    folder = copy_of(saved_dense, tmp_path)
    file = folder / COMPONENT_FILE
    file.write_text(damaged_files(file.read_text())[damage])
    with pytest.raises(ConfigError, match=rf"{file}") as refused:
        loader(folder)
    assert "\n" not in str(refused.value)  # one line


# 3. the Python API with nothing to do


@pytest.mark.parametrize("k", [0, -1])
def test_search_refuses_k_below_one(k, saved_dense, test_collection):
    model = xpretrieval.load(saved_dense, device="cpu")
    with pytest.raises(ConfigError, match=rf"k must be >= 1 .*got {k}"):
        xpretrieval.search(model, test_collection, k=k)


def test_evaluate_takes_one_measure_as_a_string(saved_dense, test_collection):
    run = xpretrieval.search(xpretrieval.load(saved_dense, device="cpu"), test_collection, k=5)
    one = xpretrieval.evaluate(run, test_collection.qrels, "nDCG@10")
    assert one.aggregate == xpretrieval.evaluate(run, test_collection.qrels, ["nDCG@10"]).aggregate
    assert list(one.aggregate) == ["nDCG@10"]


MODELS = {
    "dense": lambda d, m: Dense(name_or_path=str(d), doc_max_length=32),
    "splade": lambda d, m: Splade(name_or_path=str(m), doc_max_length=32),
    "colbert": lambda d, m: ColBERT(name_or_path=str(d), query_max_length=8, doc_max_length=16),
}


@pytest.mark.parametrize("kind", MODELS)
def test_encoding_no_texts_gives_no_rows_of_the_model_s_shape(kind, tiny_model_dir, masked_lm_dir):
    model = MODELS[kind](tiny_model_dir, masked_lm_dir).build()
    for encode in (model.encode_queries, model.encode_documents):
        one = encode(["honey bees"])
        none = encode([])
        assert none.shape == (0, *one.shape[1:]) and none.dtype == one.dtype == torch.float32


# 4. Anserini impacts


@pytest.mark.parametrize(
    ("scale", "problem"),
    [(1e30, "beyond the 65535 repetitions of a term"), (1e-9, "rounds every document weight")],
)
def test_an_export_scale_that_overflows_or_erases_the_impacts_is_refused(
    scale, problem, splade, test_collection, tmp_path
):
    settings = ExportConfig(scale=scale)
    with pytest.raises(ConfigError, match=rf"{re.escape(f'export.scale={scale:g}')} .*{problem}"):
        export_collection(splade, test_collection, tmp_path / "export", settings, *ENCODING)
    assert list(tmp_path.iterdir()) == []  # nothing written


def named_range(scale: float, splade: Splade, collection: Collection, tmp: Path) -> list[float]:
    """The scales that the refusal of `scale` says to choose between."""
    with pytest.raises(ConfigError) as refused:
        export_collection(splade, collection, tmp / "refused", ExportConfig(scale), *ENCODING)
    found = re.search(r"choose export.scale between (\S+) and ([^\s;,]+)", str(refused.value))
    assert found, str(refused.value)
    return [float(found[1]), float(found[2])]


def test_the_scale_range_named_by_a_refusal_exports(splade, test_collection, tmp_path):
    low, high = named_range(1e-9, splade, test_collection, tmp_path)
    assert named_range(1e30, splade, test_collection, tmp_path)[0] == low  # the same weights
    export_collection(splade, test_collection, tmp_path / "high", ExportConfig(high), *ENCODING)
    documents = (tmp_path / "high" / "corpus" / "docs.jsonl").read_text().splitlines()
    impacts = [i for line in documents for i in json.loads(line)["vector"].values()]
    assert 0 < max(impacts) <= 2**16 - 1 and min(impacts) > 0
    export_collection(splade, test_collection, tmp_path / "low", ExportConfig(low), *ENCODING)
    documents = (tmp_path / "low" / "corpus" / "docs.jsonl").read_text().splitlines()
    assert max(i for line in documents for i in json.loads(line)["vector"].values()) == 1


# 5. faiss indexes that cannot train


def test_a_faiss_index_with_more_lists_than_documents_is_refused():
    pytest.importorskip("faiss")
    from tests.test_faiss_index import DOT, shuffled_batches, unit_vectors
    from xpretrieval.retrieval.faiss_index import Faiss

    documents = unit_vectors(300, 16, 0)
    config = Faiss(factory="IVF4096,Flat")
    with pytest.raises(ConfigError, match=r"index.factory='IVF4096,Flat' .* on 300 documents"):
        config.build(shuffled_batches(documents, 32, 0), 300, DOT)


# 6. damaged encoding shards


def encode(model: Dense, folder: Path) -> None:
    texts = list(Collection.from_beir(TINY_BEIR, "test").documents.values())
    fingerprint = {"model": "m"}
    encode_shards(model, texts, folder, 6, World(), Batching(4), CPU, Precision.fp32, fingerprint)


def read(folder: Path) -> torch.Tensor:
    rows, reps = zip(*read_shards(folder, 20, 6), strict=True)
    return torch.cat(reps)[torch.argsort(torch.cat(rows))]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_reading_a_truncated_shard_is_refused_naming_it(tiny_model_dir, tmp_path):
    encode(Dense(name_or_path=str(tiny_model_dir)).build(), tmp_path)
    truncate(shard_path(tmp_path, 2))
    with pytest.raises(ConfigError, match=rf"{shard_path(tmp_path, 2)} is damaged.* delete it"):
        read(tmp_path)


def test_a_resumed_encoding_encodes_a_truncated_shard_again(tiny_model_dir, tmp_path):
    model = Dense(name_or_path=str(tiny_model_dir)).build()
    encode(model, tmp_path)
    expected = read(tmp_path)
    truncate(shard_path(tmp_path, 2))
    encode(model, tmp_path)
    assert torch.equal(read(tmp_path), expected)
