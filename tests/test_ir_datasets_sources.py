"""Negatives and candidates from ir-datasets: docpairs (preference triples) as the pairwise
sampler's pairs and negatives, scoreddocs (a shipped first-stage ranking) as hard negatives or
re-ranking candidates. The tiny datasets are registered with ir-datasets from local files, so
the code under test goes through `ir_datasets.load` as it does for MS MARCO."""

from __future__ import annotations

import itertools
import logging
import uuid

import pytest

from tests.conftest import TINY_BEIR
from xpretrieval.core.errors import DataError
from xpretrieval.data.collection import Collection
from xpretrieval.data.run import write_trec_run
from xpretrieval.retrieval.rerank import FirstStage
from xpretrieval.samplers import BatchwiseSampler, HardNegatives, PairwiseSampler

TRIPLES = [
    ("q-bee", "bee-0", "volcano-0"),
    ("q-bee", "bee-0", "volcano-1"),
    ("q-bee", "bee-1", "volcano-0"),
    ("q-volcano", "volcano-0", "bee-0"),
    ("q-unknown", "bee-0", "volcano-0"),  # not a training query: left out
    ("q-bee", "bee-0", "no-such-doc"),  # not a document: left out
]


def register(name: str, *components) -> str:
    """Register a local dataset with ir-datasets under a fresh id and return the id."""
    import ir_datasets
    from ir_datasets.datasets.base import Dataset

    dataset_id = f"xpretrieval-test/{name}-{uuid.uuid4().hex[:8]}"
    ir_datasets.registry.register(dataset_id, Dataset(*components))
    return dataset_id


@pytest.fixture
def train_split():
    return Collection.from_beir(TINY_BEIR, "train")


@pytest.fixture
def docpairs_id(tmp_path) -> str:
    from ir_datasets.formats import TsvDocPairs
    from ir_datasets.util import LocalDownload

    path = tmp_path / "triples.tsv"
    path.write_text("".join("\t".join(triple) + "\n" for triple in TRIPLES))
    return register("docpairs", TsvDocPairs(LocalDownload(path)))


@pytest.fixture
def ranking(train_split):
    """A first-stage run over the training queries: every document, in reverse id order."""
    documents = sorted(train_split.documents, reverse=True)
    return {
        q: [(d, float(len(documents) - i)) for i, d in enumerate(documents)]
        for q in train_split.queries
    }


@pytest.fixture
def scoreddocs_id(tmp_path, ranking) -> str:
    from ir_datasets.formats import TrecScoredDocs
    from ir_datasets.util import LocalDownload

    write_trec_run(tmp_path / "scored.trec", ranking)
    return register("scoreddocs", TrecScoredDocs(LocalDownload(tmp_path / "scored.trec")))


def test_docpairs_give_the_pairs_and_their_negatives(train_split, docpairs_id, caplog):
    sampler = PairwiseSampler(docpairs=docpairs_id)
    with caplog.at_level(logging.WARNING):
        records = list(itertools.islice(sampler.records(train_split, seed=3), 60))
    below = {("q-bee", "bee-0"): {"volcano-0", "volcano-1"}, ("q-bee", "bee-1"): {"volcano-0"}}
    below[("q-volcano", "volcano-0")] = {"bee-0"}
    drawn = {(r.query.id, r.positive.id, r.negative.id) for r in records}
    assert drawn == {(q, d, other) for (q, d), others in below.items() for other in others}
    assert sampler.epoch_size(train_split) == 3  # distinct (query, preferred document)
    assert "2 of 6 docpairs name a query or document" in caplog.text
    assert records == list(itertools.islice(sampler.records(train_split, seed=3), 60))


def test_docpairs_feed_listwise_records(train_split, docpairs_id):
    sampler = BatchwiseSampler(docpairs=docpairs_id, negatives=2)
    record = next(r for r in sampler.records(train_split, seed=0) if r.positive.id == "volcano-0")
    assert [n.id for n in record.negatives] == ["bee-0", "bee-0"]


def test_scoreddocs_serve_as_candidates_and_hard_negatives(train_split, ranking, scoreddocs_id):
    candidates = FirstStage(scoreddocs=scoreddocs_id, top_k=6).run(train_split, "evaluation.rerank")
    assert candidates == {q: documents[:6] for q, documents in ranking.items()}
    pools = HardNegatives(scoreddocs=scoreddocs_id, top_k=6, skip_top=1).candidates(train_split)
    for query_id, pool in pools.items():
        judged = train_split.qrels[query_id]
        assert pool and pool == [d for d, _ in ranking[query_id][1:6] if d not in judged]


def test_a_dataset_without_docpairs_or_scoreddocs_is_named(train_split, scoreddocs_id, docpairs_id):
    with pytest.raises(DataError, match=f"{scoreddocs_id}' has no docpairs"):
        list(PairwiseSampler(docpairs=scoreddocs_id).records(train_split, seed=0))
    with pytest.raises(DataError, match=f"{docpairs_id}' has no scoreddocs"):
        FirstStage(scoreddocs=docpairs_id, top_k=5).run(train_split, "evaluation.rerank")
    with pytest.raises(DataError, match="unknown ir-datasets id 'no/such/id'"):
        FirstStage(scoreddocs="no/such/id", top_k=5).run(train_split, "evaluation.rerank")
