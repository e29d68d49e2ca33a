"""No silently wrong number: a saved index searched only by the model and documents that built
it, first stages that must cover the test queries, input files read alike by every reader,
outputs readable as the user's umask says."""

from __future__ import annotations

import os
import random
import shutil
import stat
from pathlib import Path

import pytest
import scipy.sparse
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY_BEIR, fixture_words, make_tiny_bert
from xpretrieval.core.errors import ConfigError, DataError
from xpretrieval.core.io import atomic_directory, write_json
from xpretrieval.data.collection import Collection
from xpretrieval.evaluation.measures import compute_metrics
from xpretrieval.models import Dense, Splade
from xpretrieval.models.encoding import Batching
from xpretrieval.retrieval.index import ExactIndex, Inverted
from xpretrieval.retrieval.inverted import InvertedSearch
from xpretrieval.retrieval.rerank import FirstStage
from xpretrieval.retrieval.retrieve import retrieve

CPU = torch.device("cpu")
WORDS = [w for w in fixture_words() if w.isalpha()]


@pytest.fixture(scope="module")
def dense(tiny_model_dir):
    return Dense(name_or_path=str(tiny_model_dir), query_max_length=16, doc_max_length=32).build()


@pytest.fixture(scope="module")
def other_dense(tmp_path_factory):
    """The same architecture with other weights."""
    folder = make_tiny_bert(tmp_path_factory.mktemp("other-bert"), seed=1)
    return Dense(name_or_path=str(folder), query_max_length=16, doc_max_length=32).build()


def random_collection(seed: int, n_documents: int, n_queries: int) -> Collection:
    rng = random.Random(seed)

    def text() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9)))

    documents = {f"d{i}": text() for i in range(n_documents)}
    queries = {f"q{i}": text() for i in range(n_queries)}
    qrels = {q: {f"d{rng.randrange(n_documents)}": 1} for q in queries}
    return Collection.checked("random", documents, queries, qrels)


def search(model, collection, folder: Path, load: bool):
    index = ExactIndex(load=str(folder) if load else None)
    return retrieve(model, collection, index, 5, Batching(4), CPU, save_to=None if load else folder)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), n_documents=st.integers(2, 12), n_queries=st.integers(1, 4))
def test_a_saved_index_gives_the_same_metrics_and_refuses_any_other_model_or_documents(
    dense, other_dense, tmp_path_factory, seed, n_documents, n_queries
):
    collection = random_collection(seed, n_documents, n_queries)
    folder = tmp_path_factory.mktemp("index") / "index"
    built = search(dense, collection, folder, load=False)
    loaded = search(dense, collection, folder, load=True)
    metrics = ["nDCG@10", "R@5"]
    assert compute_metrics(loaded.run, collection.qrels, metrics) == compute_metrics(
        built.run, collection.qrels, metrics
    )
    with pytest.raises(ConfigError, match="the model's weights differ"):
        search(other_dense, collection, folder, load=True)
    edited = dict(collection.documents, d0=collection.documents["d0"] + " more")
    changed = Collection("random", edited, collection.queries, collection.qrels)
    with pytest.raises(ConfigError, match="the documents' texts differ"):
        search(dense, changed, folder, load=True)


def test_encoding_settings_and_model_kind_are_checked(dense, tiny_model_dir, tmp_path):
    collection = Collection.from_beir(TINY_BEIR, "test")
    search(dense, collection, tmp_path / "index", load=False)
    shorter = Dense(name_or_path=str(tiny_model_dir), query_max_length=16, doc_max_length=8)
    with pytest.raises(ConfigError, match="model.config.doc_max_length: 32 in the index, 8 now"):
        search(shorter.build(), collection, tmp_path / "index", load=True)
    longer_queries = Dense(name_or_path=str(tiny_model_dir), query_max_length=8, doc_max_length=32)
    search(longer_queries.build(), collection, tmp_path / "index", load=True)  # documents alike
    splade = Splade(name_or_path=str(tiny_model_dir), doc_max_length=32).build()
    with pytest.raises(ConfigError, match="encoded by a DenseEncoder but this run's model is a"):
        search(splade, collection, tmp_path / "index", load=True)
    sparse_index = Inverted(save=True)
    retrieve(splade, collection, sparse_index, 5, Batching(4), CPU, save_to=tmp_path / "sparse")
    with pytest.raises(ConfigError, match="encoded by a SpladeEncoder but this run's model is a"):
        retrieve(dense, collection, Inverted(load=str(tmp_path / "sparse")), 5, Batching(4), CPU)


def test_sparse_indexes_receive_the_non_zeros_and_rank_as_exact_search(tiny_model_dir, monkeypatch):
    """Queries reach the inverted index as sparse rows, never a dense [queries, vocab] matrix,
    and it ranks (and counts active terms) as exact search over the dense weights does."""
    collection = random_collection(5, 12, 4)
    config = Splade(name_or_path=str(tiny_model_dir), doc_max_length=32, new_head_bias=0.0)
    splade = config.build().eval()
    received = []
    search = InvertedSearch.search
    monkeypatch.setattr(
        InvertedSearch, "search", lambda self, q, k: received.append(q) or search(self, q, k)
    )
    inverted = retrieve(splade, collection, Inverted(), 5, Batching(4), CPU)
    exact = retrieve(splade, collection, ExactIndex(), 5, Batching(4), CPU)
    assert len(received) == 1 and scipy.sparse.issparse(received[0])
    for query, ranked in exact.run.items():
        found = inverted.run[query]
        assert [doc for doc, _ in found] == [doc for doc, _ in ranked]
        assert [s for _, s in found] == pytest.approx([s for _, s in ranked], rel=1e-5)
    for side in ("query", "doc"):
        name = f"{side}_active_dims"
        assert inverted.statistics[name] == exact.statistics[name] > 0


def write_run(path: Path, query_ids: list[str]) -> str:
    path.write_text("".join(f"{q} Q0 violin-0 1 1.0 x\n" for q in query_ids))
    return str(path)


def test_a_first_stage_must_rank_every_query_unless_partial_is_accepted(tmp_path):
    test = Collection.from_beir(TINY_BEIR, "test")
    queries = sorted(test.queries)
    some = write_run(tmp_path / "some.trec", queries[:1])
    with pytest.raises(DataError, match=r"ranks 1 of the \d+ queries .* evaluation.rerank.partial"):
        FirstStage(run_file=some, top_k=5).run(test, "evaluation.rerank")
    partial = FirstStage(run_file=some, top_k=5, partial=True).run(test, "evaluation.rerank")
    assert [q for q, ranking in partial.items() if ranking] == queries[:1]
    none = write_run(tmp_path / "none.trec", ["q-unknown"])
    with pytest.raises(DataError, match="ranks none of the"):
        FirstStage(run_file=none, top_k=5, partial=True).run(test, "evaluation.rerank")
    every = write_run(tmp_path / "every.trec", queries)
    assert all(FirstStage(run_file=every, top_k=5).run(test, "evaluation.rerank").values())


BOM = "\ufeff".encode()


@pytest.mark.parametrize("name", ["corpus.jsonl", "queries.jsonl", "qrels/train.tsv"])
@pytest.mark.parametrize("header", [True, False])
def test_a_byte_order_mark_is_read_alike_by_every_reader(tmp_path, name, header):
    folder = Path(shutil.copytree(TINY_BEIR, tmp_path / "beir"))
    qrels = folder / "qrels" / "train.tsv"
    if not header:
        qrels.write_text("".join(qrels.read_text().splitlines(keepends=True)[1:]))
    plain = Collection.from_beir(folder, "train")
    path = folder / name
    path.write_bytes(BOM + path.read_bytes())
    assert Collection.from_beir(folder, "train") == plain


def test_a_run_file_with_a_byte_order_mark_reads_its_first_line(tmp_path):
    from xpretrieval.data.run import read_trec_run

    (tmp_path / "run.trec").write_bytes(BOM + b"q1 Q0 d1 1 2.0 x\nq1 Q0 d2 2 1.0 x\n")
    assert read_trec_run(tmp_path / "run.trec") == {"q1": [("d1", 2.0), ("d2", 1.0)]}


@pytest.mark.parametrize(
    ("umask", "file_mode", "folder_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]
)
def test_outputs_follow_the_umask(tmp_path, umask, file_mode, folder_mode):
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "metrics.json", {"ok": 1})
        with atomic_directory(tmp_path / "checkpoint") as folder:
            (folder / "weights").write_text("w")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "checkpoint").stat().st_mode) == folder_mode
