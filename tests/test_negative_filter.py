"""Hard negatives filtered by a cross-encoder (samplers/negative_filter.py): each criterion
drops exactly the candidates its formula names, against the lowest-scored positive; bad
settings are refused naming the key before any model loads; training runs with the filter."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
import yaml

import xpretrieval
from tests.conftest import TINY_BEIR, tiny_overrides
from xpretrieval.core.device import Precision
from xpretrieval.core.errors import ConfigError
from xpretrieval.data.collection import Collection
from xpretrieval.models import CrossEncoder
from xpretrieval.samplers import CrossEncoderFilter, HardNegatives, PairwiseSampler

FILTER = "sampler.hard_negatives.filter"


@pytest.fixture(scope="module")
def collection() -> Collection:
    return Collection.from_beir(TINY_BEIR, "train")


@pytest.fixture(scope="module")
def run_file(collection, tmp_path_factory) -> Path:
    """A TREC run ranking every document for every training query, in corpus order."""
    path = tmp_path_factory.mktemp("first-stage") / "run.trec"
    lines = [
        f"{query_id} Q0 {doc_id} {rank} {100 - rank} test"
        for query_id in collection.queries
        for rank, doc_id in enumerate(collection.documents, start=1)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def cross_encoder_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A saved tiny cross-encoder whose random weights are drawn wide (std 0.3), so that its
    scores spread over (0, 1) rather than all near 0.5."""
    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    torch.manual_seed(7)
    config = CrossEncoder(name_or_path=str(tiny_model_dir), query_max_length=16, doc_max_length=32)
    model = config.build()
    with torch.no_grad():
        for weight in model.query_encoder.parameters():
            if weight.dim() == 2:
                weight.normal_(0.0, 0.3)
    model.save(folder)
    return folder


# q-bee's positives score 0.875 and 0.75 (the lowest, which bounds the negatives); its first
# five unjudged documents score as below (dyadic fractions: the comparisons are exact)
POSITIVES = {"bee-0": 0.875, "bee-1": 0.75}
CANDIDATES = {
    "volcano-0": 0.8125,
    "volcano-1": 0.75,
    "whale-0": 0.625,
    "whale-1": 0.5,
    "coffee-0": 0.125,
}


@pytest.mark.parametrize(
    ("setting", "kept"),
    [
        # s <= 0.75 - 0.125: equality keeps whale-0; volcano-1 is within the margin of bee-1
        ({"absolute_margin": 0.125}, ["whale-0", "whale-1", "coffee-0"]),
        # s <= 0.75 - 0.75 * 0.5 = 0.375
        ({"relative_margin": 0.5}, ["coffee-0"]),
        ({"max_score": 0.55}, ["whale-1", "coffee-0"]),
        # every criterion set must pass
        ({"absolute_margin": 0.0, "max_score": 0.7}, ["whale-0", "whale-1", "coffee-0"]),
    ],
)
def test_each_criterion_drops_what_its_formula_names(
    setting, kept, collection, run_file, monkeypatch, caplog
):
    def scores(self, collection, pairs):
        assert set(pairs["q-bee"]) == {*CANDIDATES, *POSITIVES}  # each pair scored once
        return {"q-bee": {**CANDIDATES, **POSITIVES}}

    monkeypatch.setattr(CrossEncoderFilter, "scores", scores)
    hard = HardNegatives(
        run_file=str(run_file),
        top_k=7,  # the two positives, then the five candidates above
        filter=CrossEncoderFilter(model="a cross-encoder", **setting),
    )
    with caplog.at_level(logging.INFO):
        pools = hard.candidates(collection)
    assert pools["q-bee"] == kept
    assert pools["q-volcano"][:1] == ["bee-0"]  # unscored queries keep their pool
    total = sum(
        map(len, HardNegatives(run_file=str(run_file), top_k=7).candidates(collection).values())
    )
    dropped = len(CANDIDATES) - len(kept)
    assert f"kept {total - dropped} of {total} candidates" in caplog.text
    assert f"dropped {dropped} (" in caplog.text


def test_a_query_left_without_negatives_is_counted(collection, run_file, monkeypatch, caplog):
    monkeypatch.setattr(
        CrossEncoderFilter, "scores", lambda self, c, p: {"q-bee": {**CANDIDATES, **POSITIVES}}
    )
    hard = HardNegatives(
        run_file=str(run_file), top_k=7, filter=CrossEncoderFilter(model="m", max_score=0.1)
    )
    with caplog.at_level(logging.INFO):
        assert hard.candidates(collection)["q-bee"] == []
    assert "dropped 5 (max_score 5); 1 of 6 queries left without a hard negative" in caplog.text
    assert "no hard negative in ranks 1-7 that the filter kept" in caplog.text


def test_the_criteria_on_hand_values():
    both = CrossEncoderFilter(model="m", absolute_margin=0.25, relative_margin=0.5)
    assert both.dropped_by(0.625, positive=0.75) == "absolute_margin"  # > 0.75 - 0.25
    assert both.dropped_by(0.4375, positive=0.75) == "relative_margin"  # > 0.75 - 0.375
    assert both.dropped_by(0.375, positive=0.75) is None
    assert both.dropped_by(0.99, positive=None) is None  # no scored positive: margins skip
    logits = CrossEncoderFilter(model="m", absolute_margin=0.5, sigmoid=False, max_score=3.0)
    assert logits.dropped_by(-1.25, positive=-1.0) == "absolute_margin"
    assert logits.dropped_by(-2.0, positive=-1.0) is None
    assert logits.dropped_by(3.5, positive=None) == "max_score"


@pytest.mark.parametrize("criterion", ["absolute_margin", "relative_margin", "max_score"])
def test_a_saved_cross_encoder_drops_what_its_own_scores_say(
    criterion, collection, run_file, cross_encoder_dir
):
    model = xpretrieval.load(cross_encoder_dir, "cpu")
    pools = HardNegatives(run_file=str(run_file), top_k=8).candidates(collection)
    statistics = {}  # (query, candidate) -> what the criterion compares with its setting
    with torch.no_grad():
        for query_id, pool in pools.items():
            positives = list(collection.qrels[query_id])
            texts = [collection.documents[d] for d in pool + positives]
            logits = model.score_texts([collection.queries[query_id]], texts)[0].double()
            scores = torch.sigmoid(logits).tolist()
            positive = min(scores[len(pool) :])
            for doc, score in zip(pool, scores, strict=False):
                statistics[query_id, doc] = {
                    "absolute_margin": positive - score,  # kept when >= the margin
                    "relative_margin": (positive - score) / abs(positive),
                    "max_score": -score,  # kept when score <= max_score
                }[criterion]
    # the setting halfway between the two middle statistics, so the batches' rounding cannot
    # move a candidate across it; margins must be >= 0
    values = sorted(v for v in statistics.values() if criterion == "max_score" or v > 0)
    low, high = values[len(values) // 2 - 1], values[len(values) // 2]
    assert high - low > 1e-5
    setting = (low + high) / 2
    expected = {key for key, value in statistics.items() if value >= setting}
    value = -setting if criterion == "max_score" else setting
    sampler = PairwiseSampler(
        hard_negatives=HardNegatives(
            run_file=str(run_file),
            top_k=8,
            filter=CrossEncoderFilter(
                model=str(cross_encoder_dir),
                device="cpu",
                precision=Precision.fp32,
                batch_size=3,
                **{criterion: value},
            ),
        )
    )
    kept = {(q, d) for q, d, pool in sampler.candidates(collection) for d in pool}
    assert kept == expected and 0 < len(kept) < len(statistics)


BASE = ["sampler.hard_negatives.top_k=5"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            [f"{FILTER}.model=m", f"{FILTER}.relative_margin=1.0"],
            rf"^{FILTER}\.relative_margin must be in \[0, 1\) or null, got 1.0",
        ),
        (
            [f"{FILTER}.model=m", f"{FILTER}.absolute_margin=-0.1"],
            rf"^{FILTER}\.absolute_margin must be in \[0, 1\) or null",
        ),
        (
            [f"{FILTER}.model=m", f"{FILTER}.absolute_margin=nan"],
            rf"^{FILTER}\.absolute_margin must be .* got nan",
        ),
        (
            [f"{FILTER}.model=m", f"{FILTER}.max_score=1.5"],
            rf"^{FILTER}\.max_score must be in \(0, 1\) or null",
        ),
        (
            [f"{FILTER}.model=m", f"{FILTER}.relative_margin=0.05", f"{FILTER}.sigmoid=false"],
            rf"^{FILTER}\.relative_margin=0.05 reads scores as fractions .* set sigmoid=true",
        ),
        ([f"{FILTER}.absolute_margin=0.1"], rf"^{FILTER}\.absolute_margin=0.1 needs model"),
        ([f"{FILTER}.model=m"], rf"^{FILTER}\.model='m' alone drops nothing"),
        (
            [f"{FILTER}.model=m", f"{FILTER}.max_score=0.5", f"{FILTER}.batch_size=0"],
            rf"^{FILTER}\.batch_size must be >= 1",
        ),
        (
            [f"{FILTER}.model=m", f"{FILTER}.max_score=0.5", "sampler.hard_negatives.top_k=0"],
            rf"^{FILTER}\.model='m' filters hard negatives, which are off \(top_k=0\)",
        ),
        (
            [f"{FILTER}.model=/no/such/cross-encoder", f"{FILTER}.max_score=0.5"],
            rf"^{FILTER}\.model=/no/such/cross-encoder: ",
        ),
    ],
)
def test_bad_settings_are_refused_naming_the_key(overrides, message, tiny_model_dir):
    with pytest.raises(ConfigError, match=message):
        xpretrieval.configure([*tiny_overrides(tiny_model_dir), *BASE, *overrides])


def test_a_filter_model_that_is_not_a_cross_encoder_is_refused_before_it_loads(tiny_model_dir):
    overrides = [f"{FILTER}.model={tiny_model_dir}", f"{FILTER}.max_score=0.5"]
    with pytest.raises(ConfigError, match=rf"^{FILTER}\.model=.* holds a Dense model"):
        xpretrieval.configure([*tiny_overrides(tiny_model_dir), *BASE, *overrides])


def test_training_with_the_filter_end_to_end(
    tiny_model_dir, cross_encoder_dir, run_file, tmp_path, caplog
):
    overrides = [
        *tiny_overrides(tiny_model_dir),
        "trainer.max_steps=2",
        f"sampler.hard_negatives.run_file={run_file}",
        "sampler.hard_negatives.top_k=8",
        f"{FILTER}.model={cross_encoder_dir}",
        f"{FILTER}.absolute_margin=0.0",  # only what scores below every positive
        f"{FILTER}.device=cpu",
    ]
    with caplog.at_level(logging.INFO):
        metrics = xpretrieval.train_from_overrides(overrides, tmp_path)
    assert math.isfinite(metrics["nDCG@10"])
    assert f"Hard-negative filter ({cross_encoder_dir}): kept" in caplog.text
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["sampler"]["hard_negatives"]["filter"]["model"] == str(cross_encoder_dir)
