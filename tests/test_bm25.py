"""BM25 through bm25s: stemmed lexical matching, and a model with nothing to train."""

from __future__ import annotations

import pytest

from tests.conftest import TINY_BEIR, compose_config
from xpretrieval.commands.experiment import load_experiment
from xpretrieval.commands.train import run_train
from xpretrieval.core.errors import ConfigError
from xpretrieval.data.collection import Collection
from xpretrieval.models import Bm25
from xpretrieval.models.encoding import Batching


def test_stemmed_words_match_and_rank_their_documents_first():
    collection = Collection(
        "toy",
        {"lava": "Lava flows from volcanoes", "bees": "Honey bees pollinate", "empty": "the of"},
        {"q1": "volcano flowing", "q2": "pollinating bee", "q3": "unrelated words"},
        {"q1": {"lava": 1}, "q2": {"bees": 1}, "q3": {"lava": 1}},
    )
    run, statistics = Bm25().build().rank(collection, k=10)
    assert [doc for doc, _ in run["q1"]] == ["lava"]  # volcano(es), flow(ing) after stemming
    assert [doc for doc, _ in run["q2"]] == ["bees"]
    assert run["q3"] == []  # no shared word: nothing, not zero-score filler
    assert statistics["documents"] == 3


def test_bm25_evaluates_the_fixture_through_the_retrieval_path():
    from xpretrieval.evaluation.measures import compute_metrics
    from xpretrieval.retrieval.retrieve import retrieve

    test = Collection.from_beir(TINY_BEIR, "test")
    retrieval = retrieve(Bm25().build(), test, None, 10, Batching(8), None)
    metrics = compute_metrics(retrieval.run, test.qrels, ["nDCG@10"]).aggregate
    assert metrics["nDCG@10"] > 0.5 and retrieval.statistics["search_seconds"] >= 0


def test_bm25_has_nothing_to_train_and_refuses_a_bad_stemmer(tmp_path):
    with pytest.raises(ConfigError, match="a Bm25 model has nothing to train; run `evaluate`"):
        run_train(load_experiment(compose_config("model=bm25")), tmp_path)
    with pytest.raises(ConfigError, match="model.stemmer: 'klingon' is not a PyStemmer language"):
        load_experiment(compose_config("model=bm25", "model.stemmer=klingon"))
