"""`fuse`: runs of one collection fused (reciprocal rank fusion, weighted sums of normalised
scores) and measured like any run, in a run directory `report` compares."""

from __future__ import annotations

import json

import pytest

import xpretrieval
from tests.conftest import TINY_BEIR, tiny_overrides
from xpretrieval.commands.evaluate import run_evaluate
from xpretrieval.commands.fuse import fuse_run_dirs, main
from xpretrieval.commands.report import find_runs
from xpretrieval.core.errors import UserInputError
from xpretrieval.evaluation.fusion import fuse_runs


def test_reciprocal_rank_fusion_adds_one_over_60_plus_rank():
    first = {"q": [("a", 9.0), ("b", 5.0)]}
    second = {"q": [("b", 0.7), ("c", 0.2)]}
    fused = fuse_runs([first, second], "rrf")
    expected = {"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 62}
    assert [doc for doc, _ in fused["q"]] == ["b", "a", "c"]
    assert {doc: score for doc, score in fused["q"]} == pytest.approx(expected)


def test_a_weighted_sum_normalises_each_run_first():
    first = {"q": [("a", 100.0), ("b", 0.0)]}
    second = {"q": [("b", 1.0), ("a", 0.0)]}
    fused = dict(fuse_runs([first, second], "wsum", weights=[0.25, 0.75])["q"])
    assert fused == pytest.approx({"a": 0.25, "b": 0.75})
    mnz = dict(fuse_runs([first, {"q": [("a", 3.0), ("c", 1.0)]}], "comb_mnz")["q"])
    assert mnz == pytest.approx({"a": 2 * (1.0 + 1.0), "b": 0.0, "c": 0.0})


def test_fusing_a_dense_and_a_bm25_run_is_measured_and_reported(tiny_model_dir, tmp_path):
    dense, bm25 = tmp_path / "dense", tmp_path / "bm25"
    shrink = tiny_overrides(tiny_model_dir)  # the test split is the fixture's test qrels
    run_evaluate(xpretrieval.configure(shrink, "evaluate"), dense)
    data = [o for o in shrink if o.startswith(("dataset", "evaluation", "device"))]
    run_evaluate(xpretrieval.configure([*data, "model=bm25"], "evaluate"), bm25)
    aggregate = fuse_run_dirs([dense, bm25], tmp_path / "fused", "rrf", None, "min-max")
    measured = json.loads((tmp_path / "fused" / "metrics.json").read_text())
    assert measured["aggregate"] == aggregate and 0 <= aggregate["nDCG@10"] <= 1
    assert measured["per_query"] and measured["fused"]["method"] == "rrf"
    assert sorted(run.path.name for run in find_runs(tmp_path)) == ["bm25", "dense", "fused"]
    with pytest.raises(UserInputError, match="already holds a run"):  # never overwritten
        fuse_run_dirs([dense, bm25], tmp_path / "fused", "rrf", None, "min-max")


def test_what_cannot_be_fused_is_one_line(tmp_path):
    with pytest.raises(UserInputError, match="not a finished run"):
        main([str(tmp_path), str(TINY_BEIR)])
    with pytest.raises(UserInputError, match="weights: 3 weights for 2 runs"):
        fuse_runs([{"q": [("a", 1.0)]}] * 2, "wsum", weights=[1.0, 1.0, 1.0])
