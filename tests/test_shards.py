"""Sharded corpus encoding: shards written by several processes read back as one process's
encoding; an interrupted encoding resumes from its finished shards; shards of another model
are refused; `evaluate` on two CPU processes measures what one process measures."""

from __future__ import annotations

import json

import pytest
import scipy.sparse
import torch

from tests import inprocess
from tests.conftest import TINY_BEIR, tiny_overrides
from xpretrieval.core.device import Precision
from xpretrieval.core.distributed import World
from xpretrieval.core.errors import ConfigError
from xpretrieval.data.collection import Collection
from xpretrieval.models import Dense, Splade
from xpretrieval.models.encoding import Batching, encode_texts
from xpretrieval.retrieval.index import ExactIndex, Inverted
from xpretrieval.retrieval.retrieve import retrieve
from xpretrieval.retrieval.saved import index_provenance
from xpretrieval.retrieval.shards import Sharding, encode_shards, read_shards, shard_path

CPU = torch.device("cpu")


def texts() -> list[str]:
    return list(Collection.from_beir(TINY_BEIR, "test").documents.values())


def encode(model, folder, world: World, fingerprint: dict | None = None) -> None:
    fingerprint = fingerprint or {"model": "m"}
    encode_shards(model, texts(), folder, 6, world, Batching(4), CPU, Precision.fp32, fingerprint)


def read(folder) -> torch.Tensor:
    """The shards' vectors in text order, dense (sparse models' shards hold sparse rows)."""
    rows, reps = zip(*read_shards(folder, len(texts()), 6), strict=True)
    dense = [torch.from_numpy(r.toarray()) if scipy.sparse.issparse(r) else r for r in reps]
    return torch.cat(dense)[torch.argsort(torch.cat(rows))]


@pytest.mark.parametrize("kind", ["dense", "splade"])
def test_shards_of_two_processes_read_back_as_one_process(
    kind, tiny_model_dir, masked_lm_dir, tmp_path
):
    if kind == "dense":
        model = Dense(name_or_path=str(tiny_model_dir)).build().eval()
    else:
        model = Splade(name_or_path=str(masked_lm_dir)).build().eval()
    encode(model, tmp_path / "one", World())
    for rank in range(2):  # the two processes' shares, as they would run side by side
        encode(model, tmp_path / "two", World(rank, 2))
    assert torch.equal(read(tmp_path / "two"), read(tmp_path / "one"))
    whole = encode_texts(model.text_encoder(False), texts(), Batching(4), CPU, Precision.fp32)
    torch.testing.assert_close(read(tmp_path / "one"), whole, atol=1e-5, rtol=0)
    assert len(list((tmp_path / "one").glob("shard-*.pt"))) == 4  # 20 documents, 6 a shard
    _, first = next(read_shards(tmp_path / "one", len(texts()), 6))
    assert scipy.sparse.issparse(first) == (kind == "splade")  # stored and read as non-zeros


def test_an_interrupted_encoding_resumes_from_its_finished_shards(tiny_model_dir, tmp_path):
    model = Dense(name_or_path=str(tiny_model_dir)).build().eval()
    encode(model, tmp_path, World())
    expected = read(tmp_path)
    finished = {i: shard_path(tmp_path, i).stat().st_mtime_ns for i in (0, 1, 3)}
    shard_path(tmp_path, 2).unlink()  # the shard being written when the run stopped
    encode(model, tmp_path, World())
    assert {i: shard_path(tmp_path, i).stat().st_mtime_ns for i in (0, 1, 3)} == finished
    assert torch.equal(read(tmp_path), expected)


def test_shards_of_another_model_are_refused(tiny_model_dir, tmp_path):
    model = Dense(name_or_path=str(tiny_model_dir)).build().eval()
    documents = Collection.from_beir(TINY_BEIR, "test").documents
    encode(model, tmp_path, World(), index_provenance(model, documents))
    torch.nn.init.zeros_(next(model.parameters()))
    with pytest.raises(ConfigError, match="encoded by another model"):
        encode(model, tmp_path, World(), index_provenance(model, documents))


@pytest.mark.parametrize("index", [Inverted(), ExactIndex()], ids=type)
def test_a_splade_model_searches_its_sparse_shards_as_its_encoding(index, masked_lm_dir, tmp_path):
    """Shards of term weights, read back as sparse rows, rank as the unsharded encoding does,
    for the inverted index and for exact search (which takes them dense)."""
    model = Splade(name_or_path=str(masked_lm_dir)).build().eval()
    collection = Collection.from_beir(TINY_BEIR, "test")
    sharding = Sharding(tmp_path, 6, (CPU,))
    sharded = retrieve(model, collection, index, 5, Batching(4), CPU, sharding=sharding)
    plain = retrieve(model, collection, index, 5, Batching(4), CPU)
    assert sharded.run.keys() == plain.run.keys()
    for query, ranked in plain.run.items():
        assert [d for d, _ in sharded.run[query]] == [d for d, _ in ranked]
        assert [s for _, s in sharded.run[query]] == pytest.approx([s for _, s in ranked], 1e-5)


def test_evaluate_on_two_cpu_processes_measures_what_one_measures(tiny_model_dir, tmp_path):
    runs = {}
    for name, extra in {
        "plain": [],
        "sharded": ["evaluation.shard_size=6", "evaluation.devices=[cpu,cpu]"],
    }.items():
        run_dir = tmp_path / name
        inprocess.run("evaluate", [*tiny_overrides(tiny_model_dir), *extra], run_dir)
        runs[name] = json.loads((run_dir / "metrics.json").read_text())["aggregate"]
    assert runs["sharded"] == pytest.approx(runs["plain"], abs=1e-6)
    assert len(list((tmp_path / "sharded" / "encoded").glob("shard-*.pt"))) == 4


def test_an_interrupted_evaluation_resumes_from_its_shards(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(tiny_model_dir), "evaluation.shard_size=6"]
    inprocess.run("evaluate", overrides, run_dir)
    expected = json.loads((run_dir / "metrics.json").read_text())["aggregate"]
    finished = {i: shard_path(run_dir / "encoded", i).stat().st_mtime_ns for i in (0, 1, 3)}
    shard_path(run_dir / "encoded", 2).unlink()  # the shard being written when it stopped
    (run_dir / "metrics.json").unlink()
    inprocess.run("evaluate", [*overrides, f"resume={run_dir}"], run_dir)
    assert {i: shard_path(run_dir / "encoded", i).stat().st_mtime_ns for i in (0, 1, 3)} == finished
    assert json.loads((run_dir / "metrics.json").read_text())["aggregate"] == expected
