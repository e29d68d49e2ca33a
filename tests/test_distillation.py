"""Distillation: MarginMSE and KL against hand computations, records from a teacher run, the
loss and gradients of a split batch equal to the whole batch's (GradCache), and a teacher
model scoring inside the run."""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math

import pytest
import torch

from tests import inprocess
from tests.conftest import TINY_BEIR, tiny_overrides
from tests.test_grad_cache import NO_DROPOUT, gradients_of
from xpretrieval.core.device import Precision
from xpretrieval.data.collection import Collection
from xpretrieval.data.run import read_trec_run, write_trec_run
from xpretrieval.losses import BatchScores, KLDistillation, MarginMSE
from xpretrieval.models import CrossEncoder, Dense
from xpretrieval.models.encoding import Batching
from xpretrieval.retrieval.rerank import FirstStage
from xpretrieval.samplers import DistillationSampler
from xpretrieval.training.batchers import FixedBatcher, MicroBatcher
from xpretrieval.training.teacher import TeacherConfig

# two records, one negative each: columns are pos0, pos1, neg0, neg1
SCORES = [[5.0, 1.0, 2.0, 0.0], [0.0, 4.0, 9.0, 3.0]]
TEACHER = [[10.0, 6.0], [8.0, 7.0]]  # (positive, negative) of each record


def scored() -> BatchScores:
    return BatchScores(
        torch.tensor(SCORES, dtype=torch.float64),
        torch.tensor([0, 1]),
        torch.tensor([0, 1, 0, 1]),
        teacher=torch.tensor(TEACHER, dtype=torch.float64),
    )


def test_margin_mse_matches_hand_computation():
    # student margins: 5 - 2 = 3 and 4 - 3 = 1; teacher margins 4 and 1
    assert MarginMSE()(scored()).item() == pytest.approx(((3 - 4) ** 2 + (1 - 1) ** 2) / 2)
    # scaled by 2: student margins 6 and 2
    assert MarginMSE(scale=2.0)(scored()).item() == pytest.approx(((6 - 4) ** 2 + (2 - 1) ** 2) / 2)


def test_kl_distillation_matches_hand_computation():
    def softmax(values):
        exps = [math.exp(v) for v in values]
        return [e / sum(exps) for e in exps]

    expected = 0.0
    for student, teacher in (([5.0, 2.0], [10.0, 6.0]), ([4.0, 3.0], [8.0, 7.0])):
        p, q = softmax(teacher), softmax(student)
        expected += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    assert KLDistillation()(scored()).item() == pytest.approx(expected / 2)


def test_distillation_losses_need_teacher_scores():
    plain = BatchScores(torch.zeros(2, 4), torch.tensor([0, 1]), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="needs teacher scores: use sampler=distillation"):
        MarginMSE()(plain)


@pytest.fixture
def teacher_run(tmp_path):
    train = Collection.from_beir(TINY_BEIR, "train")
    documents = sorted(train.documents)
    # the teacher scores every document for every query but the first: its pairs are skipped
    run = {
        q: [(d, float(len(documents) - i)) for i, d in enumerate(documents)]
        for q in sorted(train.qrels)[1:]
    }
    write_trec_run(tmp_path / "teacher.trec", run)
    return train, run, tmp_path / "teacher.trec"


def test_records_carry_the_teacher_s_scores(teacher_run, caplog):
    train, run, path = teacher_run
    sampler = DistillationSampler(teacher_run=str(path), negatives=2, top_k=10)
    with caplog.at_level(logging.WARNING):
        records = list(itertools.islice(sampler.records(train, seed=0), 10))
    first = sorted(train.qrels)[0]
    assert "the teacher run scores no positive of" in caplog.text
    for record in records:
        assert record.query.id != first and len(record.negatives) == 2
        scores = dict(run[record.query.id])
        expected = (scores[record.positive.id], *(scores[n.id] for n in record.negatives))
        assert record.teacher_scores == expected
        assert not any(n.id in train.qrels[record.query.id] for n in record.negatives)


@pytest.mark.parametrize("micro", [1, 3])
def test_margin_mse_of_a_split_batch_equals_the_whole_batch(tiny_model_dir, teacher_run, micro):
    train, _, path = teacher_run
    records = list(
        itertools.islice(
            DistillationSampler(teacher_run=str(path), negatives=2).records(train, 0), 4
        )
    )
    # cosine scores keep the loss near 1, where float32 resolves 1e-5 absolute differences
    config = Dense(name_or_path=str(tiny_model_dir), normalize=True, config_overrides=NO_DROPOUT)
    losses = {"distill": MarginMSE()}
    whole, whole_grads = gradients_of(config, losses, FixedBatcher(batch_size=4), records)
    split, split_grads = gradients_of(
        config, losses, MicroBatcher(batch_size=4, micro=micro), records
    )
    assert split == pytest.approx(whole, abs=1e-5)
    for name, gradient in whole_grads.items():
        assert torch.allclose(split_grads[name], gradient, atol=1e-5), name


def test_teacher_model_scores_bm25_candidates_and_every_judged_document(tiny_model_dir, tmp_path):
    train = Collection.from_beir(TINY_BEIR, "train")
    teacher = TeacherConfig(CrossEncoder(name_or_path=str(tiny_model_dir)), FirstStage(top_k=1))
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    path = teacher.write_run(train, tmp_path / "teacher.trec", Batching(4), cpu, Precision.fp32)
    run = read_trec_run(path)
    bm25 = FirstStage(top_k=1).run(train, "teacher.candidates")
    assert set(run) == set(train.qrels)
    for query_id, ranking in run.items():
        expected = {d for d, _ in bm25[query_id]} | set(train.qrels[query_id])
        assert {d for d, _ in ranking} == expected
    # the scores are the teacher's: rebuild it with the same seed and score one pair
    torch.manual_seed(0)
    model = teacher.model.build().eval()
    query_id = next(iter(run))
    doc_id, score = run[query_id][0]
    with torch.no_grad():
        again = model.score_texts([train.queries[query_id]], [train.documents[doc_id]])
    assert again.item() == pytest.approx(score, abs=1e-5)
    # a resumed run reuses the file: this teacher could not even be built
    (tmp_path / "not-a-model").mkdir()
    missing = TeacherConfig(CrossEncoder(name_or_path=str(tmp_path / "not-a-model")))
    assert missing.write_run(train, path, Batching(4), cpu, Precision.fp32) == path


def test_distillation_experiment_with_a_teacher_model_end_to_end(tiny_model_dir, tmp_path):
    # the teacher's candidates: every document for every query (BM25 finds too few here)
    train = Collection.from_beir(TINY_BEIR, "train")
    every = {q: [(d, 0.0) for d in sorted(train.documents)] for q in train.queries}
    write_trec_run(tmp_path / "candidates.trec", every)
    run_dir = tmp_path / "run"
    inprocess.train(
        [
            "+experiment=distill_margin_mse",
            *tiny_overrides(tiny_model_dir),
            f"teacher.model.name_or_path={tiny_model_dir}",
            "teacher.model.query_max_length=16",
            "teacher.model.doc_max_length=32",
            "teacher.model.dim=8",
            f"teacher.candidates.run_file={tmp_path / 'candidates.trec'}",
            "sampler.top_k=5",
            "precision=fp32",
        ],
        run_dir,
    )
    teacher = read_trec_run(run_dir / "teacher_run.trec")
    assert {q: len(ranking) for q, ranking in teacher.items()} == {q: 20 for q in train.queries}
    rows = list(csv.DictReader((run_dir / "train_log.csv").open()))
    assert rows and all(math.isfinite(float(row["loss/rank"])) for row in rows)
    assert json.loads((run_dir / "metrics.json").read_text())["aggregate"]["nDCG@10"] > 0
