"""Long work reports progress where there is no terminal (batch jobs, SLURM logs): log lines
at intervals and when done, for encoding, search, re-ranking and BM25."""

from __future__ import annotations

import logging

import pytest
import torch

from tests.conftest import TINY_BEIR, compose_config
from xpretrieval.commands.experiment import load_experiment
from xpretrieval.core import progress as progress_module
from xpretrieval.core.progress import progress
from xpretrieval.data.collection import Collection
from xpretrieval.models import Bm25, Dense
from xpretrieval.models.encoding import Batching
from xpretrieval.retrieval.index import ExactIndex
from xpretrieval.retrieval.rerank import FirstStage, rerank_candidates
from xpretrieval.retrieval.retrieve import retrieve


@pytest.fixture
def every_item(monkeypatch):
    """A log line for every item and a closing line for any work (pytest's stderr is no TTY)."""
    monkeypatch.setattr(progress_module, "INTERVAL_SECONDS", 0.0)
    monkeypatch.setattr(progress_module, "QUIET_SECONDS", 0.0)


def test_progress_logs_counts_and_rate_without_a_terminal(every_item, caplog):
    with caplog.at_level(logging.INFO, logger="xpretrieval.core.progress"):
        assert list(progress(range(3), desc="encode documents", unit="batch")) == [0, 1, 2]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("encode documents: 1/3 batch in ")
    assert lines[-1].startswith("encode documents: 3/3 batch") and lines[-1].endswith("(done)")


def test_encoding_search_reranking_and_bm25_report_progress(every_item, tiny_model_dir, caplog):
    test = Collection.from_beir(TINY_BEIR, "test")
    model = Dense(name_or_path=str(tiny_model_dir)).build()
    cpu = torch.device("cpu")
    with caplog.at_level(logging.INFO):
        retrieve(model, test, ExactIndex(), 5, Batching(4), cpu)
        candidates = FirstStage(top_k=3).run(test, "evaluation.rerank")
        rerank_candidates(model, test, candidates, Batching(4), cpu)
        Bm25().build().rank(test, 5)
    text = caplog.text
    for desc in ("encode documents: ", "encode queries: ", "search: ", "encode candidates: "):
        assert desc in text, desc
    assert "BM25: indexed 20 documents of tiny_beir/test" in text


def test_experiment_presets_tag_their_runs():
    assert load_experiment(compose_config("+experiment=splade")).evaluation.run_tag == "splade"
    assert load_experiment(compose_config()).evaluation.run_tag == "xpretrieval"


def test_progress_counts_units_of_sized_items(every_item, caplog):
    batches = [["a", "b"], ["c"]]
    with caplog.at_level(logging.INFO, logger="xpretrieval.core.progress"):
        assert list(progress(batches, "encode queries", total=3, unit="text", size=len)) == batches
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("encode queries: 2/3 text in ")
    assert lines[-1].startswith("encode queries: 3/3 text") and lines[-1].endswith("(done)")
