"""Benchmark suites: presets compose, a suite measures each collection as a separate
evaluation would, a killed suite resumes where it stopped, the nano cut is drawn by seed,
train evaluates (and validates on) a suite, report compares suite runs by collection, and fuse
fuses runs of one suite collection by collection."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

import xpretrieval
from tests.conftest import CONF_DIR, ROOT, TINY_BEIR, make_tiny_bert, tiny_overrides
from tests.test_cli import cli
from xpretrieval.commands import evaluate as evaluate_module
from xpretrieval.commands.evaluate import run_evaluate
from xpretrieval.commands.fuse import fuse_run_dirs
from xpretrieval.commands.report import find_runs, write_report
from xpretrieval.commands.train import run_train
from xpretrieval.core.errors import ConfigError, RunDirectoryRefused, UserInputError
from xpretrieval.data.collection import Collection
from xpretrieval.data.passages import Passages
from xpretrieval.data.run import read_trec_run
from xpretrieval.evaluation.fusion import fuse_runs
from xpretrieval.evaluation.measures import compute_metrics
from xpretrieval.evaluation.suites import NanoCut, collection_name, suite_mean

MEASURES = ["nDCG@10", "RR@10", "R@100", "AP"]


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two BEIR folders: the fixture (4 test queries, 20 documents), and the fixture judged on
    all its 10 queries (its train and test qrels together) with 4 unjudged documents that
    share words with every query (BM25 ranks them, so a nano cut's pool takes some)."""
    first, second = tmp_path / "data" / "alpha", tmp_path / "data" / "beta"
    shutil.copytree(TINY_BEIR, first)
    shutil.copytree(TINY_BEIR, second)
    train = (TINY_BEIR / "qrels" / "train.tsv").read_text().splitlines()[1:]
    with (second / "qrels" / "test.tsv").open("a") as qrels:
        qrels.write("".join(f"{line}\n" for line in train))
    queries = [json.loads(line)["text"] for line in (TINY_BEIR / "queries.jsonl").open()]
    with (second / "corpus.jsonl").open("a") as corpus:
        for i in range(4):
            text = " ".join(queries[i:] + queries[:i])
            corpus.write(json.dumps({"_id": f"mixed-{i}", "title": "", "text": text}) + "\n")
    return first, second


def suite_overrides(model_dir: Path, *collections: Path) -> list[str]:
    return [*tiny_overrides(model_dir), f"suite.collections=[{','.join(map(str, collections))}]"]


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF_DIR / "suite").glob("*.yaml")))
def test_every_suite_preset_composes_without_loading_anything(preset):
    experiment = xpretrieval.configure([f"suite={preset}", "suite.nano.queries=50"], "evaluate")
    assert experiment.suite.enabled and experiment.suite.nano.queries == 50
    assert len(set(experiment.suite.names)) == len(experiment.suite.collections)


def test_presets_name_the_collections_they_promise():
    beir = xpretrieval.configure(["suite=beir"], "evaluate").suite
    assert "beir/scifact/test" in beir.collections and "beir/trec-covid" in beir.collections
    assert len([c for c in beir.collections if c.startswith("beir/cqadupstack/")]) == 12
    assert not any(name in c for c in beir.collections for name in ("bioasq", "signal", "news"))
    small = xpretrieval.configure(["suite=beir_small"], "evaluate").suite
    assert small.names == ["scifact", "nfcorpus", "arguana", "scidocs", "fiqa"]
    trec_dl = xpretrieval.configure(["suite=trec_dl"], "evaluate").suite
    assert trec_dl.collections == [
        "msmarco-passage/trec-dl-2019/judged",
        "msmarco-passage/trec-dl-2020/judged",
    ]
    assert not xpretrieval.configure([], "evaluate").suite.enabled  # no suite by default


def test_names_and_the_mean_count_a_group_once():
    assert collection_name("beir/scifact/test") == "scifact"
    assert collection_name("beir/cqadupstack/android") == "cqadupstack/android"
    assert collection_name("msmarco-passage/trec-dl-2019/judged") == "msmarco-passage/trec-dl-2019"
    assert collection_name(str(TINY_BEIR)) == "tiny_beir"
    values = {"cqadupstack/a": {"m": 1.0}, "cqadupstack/b": {"m": 0.0}, "scifact": {"m": 1.0}}
    assert suite_mean(values) == {"m": 0.75}  # (mean(1, 0) + 1) / 2, as BEIR counts CQADupStack


def test_a_suite_measures_each_collection_as_a_separate_evaluation(
    tiny_model_dir, folders, tmp_path, capsys
):
    run = tmp_path / "suite-run"
    suite = run_evaluate(
        xpretrieval.configure(suite_overrides(tiny_model_dir, *folders), "evaluate"), run
    )
    table = capsys.readouterr().out
    separate = {}
    for folder in folders:
        overrides = [*tiny_overrides(tiny_model_dir), f"dataset.train.beir_folder={folder}"]
        run_evaluate(xpretrieval.configure(overrides, "evaluate"), tmp_path / folder.name)
        separate[folder.name] = read(tmp_path / folder.name / "metrics.json")
    summary = read(run / "suite.json")
    assert list(summary["collections"]) == ["alpha", "beta"]
    for name, alone in separate.items():
        measured = read(run / "suite" / name / "metrics.json")
        assert measured["aggregate"] == pytest.approx(alone["aggregate"])
        assert measured["per_query"] == alone["per_query"]
        row = summary["collections"][name]
        assert {m: row[m] for m in MEASURES} == pytest.approx(alone["aggregate"])
        assert (row["documents"], row["queries"]) == (alone["documents"], alone["queries"])
        assert (run / "suite" / name / "run.trec").read_text() == (
            tmp_path / name / "run.trec"
        ).read_text()
    mean = {m: sum(alone["aggregate"][m] for alone in separate.values()) / 2 for m in MEASURES}
    assert summary["mean"] == pytest.approx(mean) and suite == pytest.approx(mean)
    pooled = read(run / "metrics.json")
    assert pooled["aggregate"] == pytest.approx(mean)
    assert len(pooled["per_query"]) == 4 + 10 and "beta/q-bee" in pooled["per_query"]
    assert (run / "suite.csv").read_text().splitlines()[0] == (
        "collection,nDCG@10,RR@10,R@100,AP,documents,queries,seconds"
    )
    assert "| mean (2 collections) |" in (run / "suite.md").read_text()
    assert "alpha" in table and "mean (2 collections)" in table


def test_a_killed_suite_resumes_without_measuring_finished_collections(
    tiny_model_dir, folders, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    overrides = suite_overrides(tiny_model_dir, *folders)
    measured: list[str] = []
    real = evaluate_module.evaluate_model

    def killed_on_beta(model, collection, *args, **kwargs):
        measured.append(collection.name)
        if collection.name.startswith("beta"):
            raise RuntimeError("killed")  # while measuring the second collection
        return real(model, collection, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate_model", killed_on_beta)
    with pytest.raises(RuntimeError, match="killed"):
        run_evaluate(xpretrieval.configure(overrides, "evaluate"), run)
    first = run / "suite" / "alpha"
    stamps = {path.name: path.stat().st_mtime_ns for path in first.iterdir()}
    assert sorted(stamps) == ["metrics.json", "run.trec"] and not (run / "metrics.json").exists()

    def counted(model, collection, *args, **kwargs):
        measured.append(collection.name)
        return real(model, collection, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate_model", counted)
    resumed = xpretrieval.configure([*overrides, f"resume={run}"], "evaluate")
    run_evaluate(resumed, run)
    assert measured == ["alpha/test", "beta/test", "beta/test"]  # alpha was not measured again
    assert {path.name: path.stat().st_mtime_ns for path in first.iterdir()} == stamps
    assert list(read(run / "suite.json")["collections"]) == ["alpha", "beta"]
    with pytest.raises(RunDirectoryRefused, match="this `evaluate` run finished"):
        run_evaluate(resumed, run)


def test_a_resumed_suite_must_measure_what_it_measured(tiny_model_dir, folders, tmp_path):
    run = tmp_path / "run"
    run_evaluate(
        xpretrieval.configure(suite_overrides(tiny_model_dir, folders[0]), "evaluate"), run
    )
    (run / "metrics.json").unlink()  # as if killed before the end
    with pytest.raises(ConfigError, match=r"^suite.collections: resume=.* measured its suite"):
        xpretrieval.configure([*tiny_overrides(tiny_model_dir), f"resume={run}"], "evaluate")
    with pytest.raises(ConfigError, match=r"^suite.nano.queries: resume="):
        overrides = [*suite_overrides(tiny_model_dir, folders[0]), "suite.nano.queries=2"]
        xpretrieval.configure([*overrides, f"resume={run}"], "evaluate")


def test_the_nano_cut_is_drawn_by_seed(folders):
    collection = Collection.from_beir(folders[1], "test")  # 10 judged queries, 24 documents
    nano = NanoCut(queries=3, bm25_pool=5)
    cut = nano.apply(collection, seed=1)
    again = nano.apply(collection, seed=1)
    other = nano.apply(collection, seed=2)
    assert len(cut.queries) == 3 and set(cut.qrels) == set(cut.queries)
    assert (cut.queries, list(cut.documents)) == (again.queries, list(again.documents))
    assert cut.queries != other.queries
    judged = {doc for docs in cut.qrels.values() for doc in docs}
    assert judged <= set(cut.documents) and len(cut.documents) <= len(judged) + 3 * 5
    assert len(cut.documents) > len(judged)  # BM25's pool adds unjudged documents
    assert list(cut.documents) == [d for d in collection.documents if d in cut.documents]
    queries_only = NanoCut(queries=3).apply(collection, seed=1)
    assert queries_only.queries == cut.queries and queries_only.documents is collection.documents
    assert NanoCut(queries=50).apply(collection, seed=1).queries == collection.queries
    windows = replace(collection, passages=Passages(length=8))  # a cut keeps the windows
    assert nano.apply(windows, seed=1).passages == Passages(length=8)


def test_a_nano_suite_records_the_cut_collections(tiny_model_dir, folders, tmp_path):
    overrides = [*suite_overrides(tiny_model_dir, *folders), "suite.nano.queries=3"]
    run_evaluate(
        xpretrieval.configure([*overrides, "suite.nano.bm25_pool=1"], "evaluate"), tmp_path
    )
    rows = read(tmp_path / "suite.json")["collections"]
    assert rows["alpha"]["queries"] == 3 and rows["beta"]["queries"] == 3
    assert rows["beta"]["documents"] < 24


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["suite.collections=[beir/no-such-collection]"], "is neither a folder nor an ir-data"),
        (["suite.collections=[./no/such/folder]"], "lacks corpus.jsonl, queries.jsonl, qrels"),
        (["suite.collections=[beir/scifact]"], "'beir/scifact' has no qrels; name its test split"),
        ([f"suite.collections=[{TINY_BEIR},./tests/fixtures/tiny_beir]"], "are both named"),
        (["suite=beir_small", "suite.nano.queries=0"], "suite.nano.queries must be >= 1"),
        (["suite=beir_small", "index.load=/somewhere"], "index.load: a saved index holds one"),
        (
            ["suite=beir_small", "evaluation.rerank.top_k=10", "evaluation.rerank.run_file=r"],
            "evaluation.rerank: a run file or scoreddocs ranks one collection",
        ),
    ],
)
def test_bad_suite_settings_are_refused_in_one_line(overrides, message, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError, match=message):
        xpretrieval.configure(overrides, "evaluate")


def test_mine_refuses_a_suite():
    with pytest.raises(ConfigError, match="suite: `mine` works on the dataset's splits"):
        xpretrieval.configure(["suite=beir_small"], "mine")


def test_train_evaluates_and_validates_on_a_suite(tiny_model_dir, folders, tmp_path):
    collections = ",".join(map(str, folders))
    overrides = [
        *suite_overrides(tiny_model_dir, *folders),
        "dataset.test.split=absent",  # never read: the suite replaces dataset.test
        "trainer.max_steps=2",
        "validation.every=1",
        f"validation.suite.collections=[{collections}]",
        "validation.suite.nano.queries=2",
    ]
    metrics = run_train(xpretrieval.configure(overrides), tmp_path)
    summary = read(tmp_path / "suite.json")
    assert metrics == pytest.approx(summary["mean"])
    saved = read(tmp_path / "metrics.json")
    checkpoint = Path(saved["checkpoint"])
    assert read(checkpoint / "metrics.json") == saved  # the checkpoint carries its metrics
    assert read(tmp_path / "suite" / "beta" / "metrics.json")["checkpoint"] == str(checkpoint)
    header = (tmp_path / "validation.csv").read_text().splitlines()[0].split(",")
    assert {"nDCG@10", "nDCG@10/alpha", "nDCG@10/beta"} <= set(header)


def test_report_compares_suite_runs_by_collection(tiny_model_dir, folders, tmp_path):
    other_model = make_tiny_bert(tmp_path / "other-model", seed=1)
    for name, model in (("base", tiny_model_dir), ("other", other_model)):
        experiment = xpretrieval.configure(suite_overrides(model, *folders), "evaluate")
        run_evaluate(experiment, tmp_path / "runs" / name)
    runs = find_runs(tmp_path / "runs")
    assert sorted(run.path.name for run in runs) == ["base", "other"]  # not their collections
    text = write_report(tmp_path / "runs", "nDCG@10", baseline="base")
    by_collection = text.split("by collection", 1)[1]
    assert "| collection | base | other |" in by_collection
    base = read(tmp_path / "runs" / "base" / "suite.json")["collections"]
    assert f"| alpha | {base['alpha']['nDCG@10']:.4f} |" in by_collection
    assert "| beta |" in by_collection


def test_runs_of_one_suite_fuse_collection_by_collection(tiny_model_dir, folders, tmp_path):
    other_model = make_tiny_bert(tmp_path / "other-model", seed=1)
    runs = [tmp_path / "runs" / name for name in ("base", "other")]
    for folder, model in zip(runs, (tiny_model_dir, other_model), strict=True):
        run_evaluate(xpretrieval.configure(suite_overrides(model, *folders), "evaluate"), folder)
    output = tmp_path / "runs" / "fused"
    mean = fuse_run_dirs(runs, output, "rrf", None, "min-max")
    table = read(output / "suite.json")
    assert set(table["collections"]) == {"alpha", "beta"} and table["mean"] == mean
    for name, folder in zip(("alpha", "beta"), folders, strict=True):
        expected = fuse_runs([read_trec_run(run / "suite" / name / "run.trec") for run in runs])
        qrels = Collection.from_beir(folder).qrels
        measured = compute_metrics(expected, qrels, MEASURES).aggregate
        assert read(output / "suite" / name / "metrics.json")["aggregate"] == measured
    assert sorted(run.path.name for run in find_runs(tmp_path / "runs")) == [
        "base",
        "fused",
        "other",
    ]
    single = tmp_path / "single"
    run_evaluate(xpretrieval.configure(tiny_overrides(tiny_model_dir), "evaluate"), single)
    with pytest.raises(UserInputError, match="ranks one collection, .* a suite"):
        fuse_run_dirs([single, runs[0]], tmp_path / "mixed", "rrf", None, "min-max")
    cut = tmp_path / "cut"
    overrides = [*suite_overrides(tiny_model_dir, *folders), "suite.nano.queries=2"]
    run_evaluate(xpretrieval.configure(overrides, "evaluate"), cut)
    with pytest.raises(UserInputError, match="another suite"):
        fuse_run_dirs([runs[0], cut], tmp_path / "other-cut", "rrf", None, "min-max")


def test_the_cli_prints_the_suite_table(tiny_model_dir, folders, tmp_path):
    run = tmp_path / "cli-run"
    result = cli(
        "evaluate", *suite_overrides(tiny_model_dir, *folders), f"hydra.run.dir={run}", cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[0].split() == [
        "collection",
        *MEASURES,
        "documents",
        "queries",
        "seconds",
    ]
    assert "collection 2/2: beta, 24 documents, 10 queries" in result.stderr
    assert (run / "suite.md").is_file() and (run / "suite" / "beta" / "run.trec").is_file()
