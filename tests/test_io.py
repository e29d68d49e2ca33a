"""Atomic writes: the previous content survives a failure while writing."""

from __future__ import annotations

import pytest

from xpretrieval.core.io import atomic_directory, atomic_file, write_json


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"ok": 1})
    with pytest.raises(RuntimeError), atomic_file(target) as handle:
        handle.write('{"half": ')
        raise RuntimeError("disk full")
    assert target.read_text() == '{\n  "ok": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_failed_directory_keeps_the_old_one(tmp_path):
    target = tmp_path / "step-0000010"
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "weights").write_text("v2-partial")
        raise RuntimeError("killed")
    assert (target / "weights").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["step-0000010"]


def test_directory_is_replaced_when_complete(tmp_path):
    target = tmp_path / "model"
    for version in ("v1", "v2"):
        with atomic_directory(target) as tmp:
            (tmp / "weights").write_text(version)
    assert (target / "weights").read_text() == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_tied_scores_are_written_in_trec_eval_order(tmp_path):
    from xpretrieval.data.run import write_trec_run

    run = {"q": [("d1", 2.0), ("d2", 1.0), ("d3", 2.0), ("d9", 1.0000000001)]}
    write_trec_run(tmp_path / "run.trec", run, tag="splade")
    lines = [line.split() for line in (tmp_path / "run.trec").read_text().splitlines()]
    # score decreasing, ties (after the 6-decimal rounding written) by document id decreasing
    assert [(f[2], f[3], f[5]) for f in lines] == [
        ("d3", "1", "splade"),
        ("d1", "2", "splade"),
        ("d9", "3", "splade"),
        ("d2", "4", "splade"),
    ]
