"""Batchwise records and hard negatives (from a run file or BM25): unjudged, from the chosen
ranks, deterministic for a seed, with a fallback to random negatives that the log counts."""

from __future__ import annotations

import itertools
import logging
import math

import pytest

from tests.conftest import TINY_BEIR
from tests.test_training import make_learner
from xpretrieval.data.collection import Collection
from xpretrieval.data.run import write_trec_run
from xpretrieval.samplers import BatchwiseSampler, HardNegatives, PairwiseSampler


@pytest.fixture
def train_split():
    return Collection.from_beir(TINY_BEIR, "train")


def take(sampler, collection, n: int = 12, seed: int = 1) -> list:
    return list(itertools.islice(sampler.records(collection, seed), n))


def test_batchwise_records_carry_n_unjudged_negatives_deterministically(train_split):
    records = take(BatchwiseSampler(negatives=3), train_split)
    assert records == take(BatchwiseSampler(negatives=3), train_split)
    for record in records:
        assert len(record.negatives) == 3
        judged = train_split.qrels[record.query.id]
        assert record.positive.id in judged
        assert not any(negative.id in judged for negative in record.negatives)


def test_hard_negatives_come_from_the_run_ranks_asked_for(train_split, tmp_path, caplog):
    queries = sorted(train_split.qrels)
    documents = sorted(train_split.documents)
    ranked = {queries[0]: documents}  # every document, in id order; other queries: none
    run = {q: [(d, float(len(docs) - i)) for i, d in enumerate(docs)] for q, docs in ranked.items()}
    write_trec_run(tmp_path / "run.trec", run)
    hard = HardNegatives(run_file=str(tmp_path / "run.trec"), top_k=8, skip_top=2)
    with caplog.at_level(logging.WARNING):
        records = take(PairwiseSampler(hard_negatives=hard), train_split, n=60)
    allowed = set(documents[2:8]) - set(train_split.qrels[queries[0]])
    drawn = {r.negative.id for r in records if r.query.id == queries[0]}
    assert drawn and drawn <= allowed
    assert (
        f"{len(queries) - 1} of {len(queries)} training queries have no hard negative"
        in caplog.text
    )


def test_bm25_hard_negatives_are_lexically_close_and_unjudged(train_split):
    pools = HardNegatives(top_k=5).candidates(train_split)
    for query_id, pool in pools.items():
        assert not set(pool) & set(train_split.qrels[query_id]) and len(pool) <= 5
    records = take(
        BatchwiseSampler(negatives=2, hard_negatives=HardNegatives(top_k=5)), train_split
    )
    assert all(n.id in pools[r.query.id] for r in records for n in r.negatives if pools[r.query.id])


def test_documents_judged_non_relevant_are_drawn_only_when_asked(tmp_path):
    documents = {d: f"text {d}" for d in ("relevant", "judged-zero", "unjudged", "other")}
    qrels = {"q": {"relevant": 1, "judged-zero": 0}}
    collection = Collection("graded", documents, {"q": "a query"}, qrels)
    ranking = ["judged-zero", "relevant", "unjudged", "other"]
    write_trec_run(tmp_path / "run.trec", {"q": [(d, 4.0 - i) for i, d in enumerate(ranking)]})
    hard = HardNegatives(run_file=str(tmp_path / "run.trec"), top_k=3)
    assert hard.candidates(collection) == {"q": ["unjudged"]}
    hard.judged_negatives = True
    assert hard.candidates(collection) == {"q": ["judged-zero", "unjudged"]}
    # a grade below the sampler's min_relevance is not a positive either
    assert hard.candidates(collection, min_relevance=2) == {
        "q": ["judged-zero", "relevant", "unjudged"]
    }


def test_hard_negative_ranks_must_make_sense():
    with pytest.raises(ValueError, match="need 0 <= skip_top < top_k"):
        HardNegatives(top_k=5, skip_top=5)
    with pytest.raises(ValueError, match="run_file needs top_k > 0"):
        HardNegatives(run_file="run.trec")


def test_hard_negatives_are_set_from_the_command_line():
    from tests.conftest import compose_config
    from xpretrieval.commands.experiment import load_experiment

    cfg = compose_config("sampler=batchwise", "sampler.hard_negatives.top_k=50")
    sampler = load_experiment(cfg).sampler
    assert sampler.hard_negatives.enabled and sampler.hard_negatives.run_file is None
    assert not load_experiment(compose_config()).sampler.hard_negatives.enabled


def test_batchwise_records_train_with_infonce(tiny_model_dir, train_split):
    learner = make_learner(tiny_model_dir, train_split, max_steps=2)
    learner.sampler = BatchwiseSampler(negatives=3)
    assert learner.fit().step == 2


def test_random_spans_come_from_one_document_and_skip_short_ones(caplog):
    from xpretrieval.data.collection import Collection
    from xpretrieval.samplers import RandomSpanSampler

    documents = {"long": "abcdefghijklmnopqrstuvwxyz" * 4, "empty": "", "one": "x", "two": "xy"}
    collection = Collection("spans", documents, {"q": "q"}, {"q": {"long": 1}})
    sampler = RandomSpanSampler(max_spansize=10)
    with caplog.at_level(logging.WARNING):
        records = take(sampler, collection, n=20)
    assert "skipped 2 documents shorter than 2 characters" in caplog.text
    assert sampler.epoch_size(collection) == 2
    for record in records:
        text = documents[record.query.id]
        assert record.query.id == record.positive.id and record.negatives == ()
        assert record.query.text in text and record.positive.text in text
        assert 1 <= len(record.query.text) <= 10
    assert records == take(sampler, collection, n=20)


def test_random_span_pairs_train_with_in_batch_negatives(tiny_model_dir, train_split):
    from xpretrieval.samplers import RandomSpanSampler

    learner = make_learner(tiny_model_dir, train_split, max_steps=2)
    learner.sampler = RandomSpanSampler(max_spansize=40)
    assert learner.fit().step == 2


def test_mine_writes_a_run_over_the_training_queries_for_hard_negatives(
    tiny_model_dir, tmp_path, train_split
):
    from tests import inprocess
    from tests.conftest import tiny_overrides

    inprocess.run("mine", tiny_overrides(tiny_model_dir), tmp_path)
    hard = HardNegatives(run_file=str(tmp_path / "run.trec"), top_k=5)
    pools = hard.candidates(train_split)
    assert set(pools) == set(train_split.qrels) and all(pools.values())
    metrics = (tmp_path / "metrics.json").read_text()
    assert '"dataset": "tiny_beir/train"' in metrics  # the training queries were ranked


@pytest.mark.parametrize("model", ["dense", "cross_encoder"])
def test_pointwise_records_train_bi_and_cross_encoders(tiny_model_dir, train_split, model):
    import torch

    from xpretrieval.losses import BinaryCrossEntropy
    from xpretrieval.models import CrossEncoder, Dense
    from xpretrieval.samplers import PointwiseSampler
    from xpretrieval.training import AdamW, Learner
    from xpretrieval.training.batchers import FixedBatcher
    from xpretrieval.training.trainers import PointwiseTrainer

    records = take(PointwiseSampler(), train_split, n=4)
    assert [r.label for r in records] == [1.0, 0.0, 1.0, 0.0]
    assert records[0].document.id in train_split.qrels[records[0].query.id]
    assert records[1].document.id not in train_split.qrels[records[1].query.id]
    torch.manual_seed(0)
    config = Dense if model == "dense" else CrossEncoder
    learner = Learner(
        model=config(name_or_path=str(tiny_model_dir)).build(),
        collection=train_split,
        sampler=PointwiseSampler(),
        batcher=FixedBatcher(batch_size=4),
        trainer=PointwiseTrainer(max_steps=2),
        losses={"rank": BinaryCrossEntropy()},
        optimizer=AdamW(lr=1e-3),
        seed=0,
    )
    state = learner.fit()
    assert state.step == 2 and math.isfinite(state.losses["rank"])
