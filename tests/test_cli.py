"""`python -m xpretrieval train|evaluate` end to end on the tiny fixture: the command line itself
(outputs, exit codes, one-line errors) in subprocesses; what the experiments measure and write
in this process, through the code the CLI runs (tests/inprocess.py)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import ir_measures
import pytest
import torch

import xpretrieval
from tests import inprocess
from tests.conftest import ROOT, TINY_BEIR, tiny_overrides
from xpretrieval.core import progress
from xpretrieval.core.errors import RunDirectoryRefused


def cli(*args: str, cwd, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xpretrieval", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def tiny_train(model_dir, *extra: str, cwd=ROOT) -> subprocess.CompletedProcess:
    """Two steps of the default experiment on the tiny model and fixture."""
    return cli("train", *tiny_overrides(model_dir), "trainer.max_steps=2", *extra, cwd=cwd)


def train_reranking(experiment: str, model_dir, run_dir, *extra: str) -> dict:
    """Train `experiment` on the fixture, evaluate by re-ranking BM25's top 5; its metrics."""
    metrics = inprocess.train(
        [
            f"+experiment={experiment}",
            *tiny_overrides(model_dir),
            "precision=fp32",
            "evaluation.rerank.top_k=5",
            *extra,
        ],
        run_dir,
    )
    assert metrics["index"]["candidates_per_query"] <= 5 and metrics["aggregate"]["nDCG@10"] > 0
    return metrics


@pytest.fixture(scope="module")
def train_run(tiny_model_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("train-run")
    result = cli("train", *tiny_overrides(tiny_model_dir), f"hydra.run.dir={run_dir}", cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


def test_train_writes_every_output(train_run):
    run_dir, _ = train_run
    for name in ("config.yaml", "run.trec", "metrics.json", "train_log.csv", "train.log"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard").iterdir())
    checkpoint = run_dir / "checkpoints" / "step-0000006"
    for name in ("config.json", "model.safetensors", "xpretrieval_model.yaml", "training_state.pt"):
        assert (checkpoint / name).is_file(), name
    assert not [p for p in run_dir.rglob("*.tmp")]  # no temporary left behind


def test_metrics_match_a_recomputation_from_the_run_file(train_run):
    run_dir, result = train_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = (
        (TINY_BEIR / "qrels" / "test.tsv").read_text().splitlines()[1:]
    )  # BEIR: header, 3 columns
    qrels = [ir_measures.Qrel(*row.split("\t")[:2], int(row.split("\t")[2])) for row in rows]
    run = list(ir_measures.read_trec_run(str(run_dir / "run.trec")))
    measures = [ir_measures.parse_measure(name) for name in metrics["aggregate"]]
    recomputed = ir_measures.calc_aggregate(measures, qrels, run)
    assert set(metrics["aggregate"]) == {"nDCG@10", "RR@10", "R@100", "AP"}
    for measure in measures:
        assert metrics["aggregate"][str(measure)] == pytest.approx(recomputed[measure], abs=1e-6)
    assert set(metrics["per_query"]) == {"q-violin", "q-tomato", "q-comet", "q-bread"}
    assert metrics["queries"] == 4 and metrics["documents"] == 20
    assert "nDCG@10" in result.stdout  # the printed table


def test_resolved_config_rebuilds_the_run(train_run):
    run_dir, _ = train_run
    config = (run_dir / "config.yaml").read_text()
    assert "${" not in config and "max_steps: 6" in config


def test_evaluate_a_checkpoint_reproduces_the_trained_metrics(train_run, tmp_path):
    run_dir, _ = train_run
    checkpoint = run_dir / "checkpoints" / "step-0000006"
    inprocess.run("evaluate", ["model=dense", *tiny_overrides(checkpoint)], tmp_path)
    trained = json.loads((run_dir / "metrics.json").read_text())["aggregate"]
    evaluated = json.loads((tmp_path / "metrics.json").read_text())["aggregate"]
    assert evaluated == pytest.approx(trained, abs=1e-6)


def test_bad_value_fails_fast_with_the_key(tmp_path):
    result = cli("train", "losses.rank.scale=-1", f"hydra.run.dir={tmp_path}", cwd=ROOT)
    assert result.returncode == 2
    assert "losses.rank.scale must be > 0, got -1.0" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_command_prints_usage(monkeypatch, capsys):
    from xpretrieval.__main__ import main

    monkeypatch.setattr(sys, "argv", ["xpretrieval", "fit"])  # refused before Hydra or torch
    with pytest.raises(SystemExit) as exit:
        main()
    assert exit.value.code == 2 and "usage: python -m xpretrieval" in capsys.readouterr().err


def test_show_the_composed_config_with_overrides(monkeypatch, capsys):
    from xpretrieval.__main__ import main

    argv = ["xpretrieval", "train", "+experiment=splade", "trainer.max_steps=3", "--cfg", "job"]
    monkeypatch.setattr(sys, "argv", argv)  # Hydra prints the config and runs nothing
    main()
    shown = capsys.readouterr().out
    assert "max_steps: 3" in shown and "flops:" in shown


def test_splade_experiment_end_to_end(tiny_model_dir, tmp_path, caplog, monkeypatch):
    metrics = inprocess.train(
        [
            "+experiment=splade",
            *tiny_overrides(tiny_model_dir),
            "precision=fp32",
            "model.new_head_bias=0",
            "losses.flops.warmup_steps=3",
            "index.save=true",
        ],
        tmp_path,
    )
    index = metrics["index"]
    assert index["documents"] == 20 and index["postings"] > 0
    assert 0 < index["doc_active_dims"] == index["postings"] / 20
    assert 0 < index["query_active_dims"] and index["queries_per_second"] > 0
    assert 0 < index["doc_sparsity_ratio"] < 1 and 0 < index["query_sparsity_ratio"] < 1
    assert set(metrics["aggregate"]) == {"nDCG@10", "RR@10", "R@100", "AP"}
    saved = (tmp_path / "checkpoints" / "step-0000006" / "xpretrieval_model.yaml").read_text()
    assert "pooling: max" in saved and "exclude_special_tokens: false" in saved
    _scores_as_sparse_encoder(tmp_path / "checkpoints" / "step-0000006")
    log = (tmp_path / "train_log.csv").read_text().splitlines()
    assert "loss/flops" in log[0] and len(log) == 4  # header + steps 2, 4, 6
    assert "flops/doc_active_dims" in log[0] and "flops/expected_flops" in log[0]
    # evaluate searches the saved index: the same run, without encoding documents again
    monkeypatch.setattr(progress, "QUIET_SECONDS", 0.0)  # every encoding logs its closing line
    caplog.set_level(logging.INFO)
    checkpoint = tmp_path / "checkpoints" / "step-0000006"
    inprocess.run(
        "evaluate",
        [
            "model=splade",
            *tiny_overrides(checkpoint),
            "index=inverted",
            f"index.load={tmp_path / 'index'}",
        ],
        tmp_path / "again",
    )
    assert "Searching the saved index" in caplog.text and "encode queries" in caplog.text
    assert "encode documents" not in caplog.text
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["aggregate"] == pytest.approx(metrics["aggregate"], abs=1e-6)


def _scores_as_sparse_encoder(checkpoint: Path) -> None:
    """The reference SPLADE's checkpoint loads in sentence-transformers' SparseEncoder, which
    scores as xpretrieval does."""
    from sentence_transformers import SparseEncoder

    ours, theirs = xpretrieval.load(checkpoint, device="cpu"), SparseEncoder(str(checkpoint))
    queries, documents = ["how do bees live"], ["bees live in colonies", "comets orbit the sun"]
    expected = ours.similarity(ours.encode_queries(queries), ours.encode_documents(documents))
    query = theirs.encode_query(queries, convert_to_tensor=True).to_dense()
    document = theirs.encode_document(documents, convert_to_tensor=True).to_dense()
    assert torch.allclose(theirs.similarity(query, document), expected, atol=1e-5)


def test_sparse_embed_experiment_end_to_end(tiny_model_dir, tmp_path):
    metrics = inprocess.train(
        [
            "+experiment=sparse_embed",
            *tiny_overrides(tiny_model_dir),
            "precision=fp32",
            "model.new_head_bias=0",
            "model.embedding_dim=8",
            "model.query_terms=8",
            "model.doc_terms=16",
            "losses.flops.warmup_steps=3",
        ],
        tmp_path,
    )
    header = (tmp_path / "train_log.csv").read_text().splitlines()[0]
    assert {"loss/rank", "loss/sparse", "loss/flops", "flops/doc_active_dims"} <= set(
        header.split(",")
    )
    assert 0 < metrics["index"]["query_active_dims"] <= 8
    assert 0 < metrics["index"]["doc_active_dims"] <= 16
    saved = tmp_path / "checkpoints" / "step-0000006"
    assert (saved / "projection.safetensors").is_file()


def test_train_validates_on_held_out_queries_and_tests_the_best_weights(
    tiny_model_dir, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    inprocess.train(
        [*tiny_overrides(tiny_model_dir), "validation.every=3", "validation.held_out_queries=3"],
        tmp_path,
    )
    assert "(held out)': 20 documents, 3 queries" in caplog.text
    rows = (tmp_path / "validation.csv").read_text().splitlines()
    assert rows[0] == "step,nDCG@10" and [row.split(",")[0] for row in rows[1:]] == ["3", "6"]
    assert "Restored the weights of step" in caplog.text


def test_a_run_directory_is_never_shared(train_run, tiny_model_dir):
    # the CLI's one-line refusal of a used folder: tests/test_run_directory.py
    run_dir, _ = train_run
    with pytest.raises(RunDirectoryRefused) as refused:
        inprocess.train(tiny_overrides(tiny_model_dir), run_dir)
    assert f"{run_dir} already holds a run (config.yaml)" in str(refused.value)
    assert f"resume={run_dir}" in str(refused.value)


def test_a_run_directory_locked_by_a_live_run_is_refused(tmp_path):
    from xpretrieval.commands.run_dir import claim_run_dir

    claim_run_dir(tmp_path, "train", resuming=False)  # this process holds the lock now
    holder = "from pathlib import Path; from xpretrieval.commands.run_dir import claim_run_dir; "
    other = subprocess.run(
        [sys.executable, "-c", holder + f"claim_run_dir(Path({str(tmp_path)!r}), 'train', False)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert other.returncode != 0
    assert "another xpretrieval run is writing to this directory" in other.stderr


def test_run_directory_records_versions_commit_and_data(train_run):
    run_dir, _ = train_run
    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["run"] == "train"  # what evaluate and export refuse to resume into
    assert environment["packages"]["torch"] and environment["packages"]["xpretrieval"]
    assert environment["git"] is None or len(environment["git"]["commit"]) == 40
    assert environment["datasets"]["train"]["documents"] == 20
    assert environment["datasets"]["test"]["queries"] > 0 and environment["device"] == "cpu"


def test_the_same_config_and_seed_give_bit_identical_results(train_run, tiny_model_dir, tmp_path):
    run_dir, _ = train_run  # trained by the CLI; again here, through the Python API
    inprocess.train(tiny_overrides(tiny_model_dir), tmp_path)
    first = json.loads((run_dir / "metrics.json").read_text())
    second = json.loads((tmp_path / "metrics.json").read_text())
    assert first["aggregate"] == second["aggregate"] and first["per_query"] == second["per_query"]
    assert (run_dir / "run.trec").read_text() == (tmp_path / "run.trec").read_text()
