"""Training data through the `datasets` library (`dataset.train.hf_dataset`): the four
published layouts and a column mapping, built here as local parquet / jsonl files from the BEIR
fixture, train the tiny model in-process and resume exactly; streaming gives the in-memory
batches; distillation learns from the dataset's scores; a dataset that does not fit is one
line. And a sentence-transformers folder loads with the settings it was saved with."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

import xpretrieval
from tests.conftest import TINY_BEIR, tiny_overrides
from xpretrieval.core.errors import ConfigError, DataError
from xpretrieval.core.hooks import TrainState
from xpretrieval.data.dataset import Split
from xpretrieval.data.hub_layouts import ColumnMapping, id_key, teacher_scores, text_id
from xpretrieval.samplers import BatchwiseSampler, DistillationSampler
from xpretrieval.training.checkpoint import Checkpointer

TEACHER = (5.0, 1.5, 0.5)  # the fixture's teacher: positive, first negative, second negative


def fixture_texts() -> tuple[dict[str, str], dict[str, str], list[tuple[str, str]]]:
    """The BEIR fixture's documents, queries and training (query, positive) pairs."""
    read = (TINY_BEIR / "corpus.jsonl").read_text().splitlines()
    documents = {item["_id"]: item["text"] for item in map(json.loads, read)}
    read = (TINY_BEIR / "queries.jsonl").read_text().splitlines()
    queries = {item["_id"]: item["text"] for item in map(json.loads, read)}
    lines = (TINY_BEIR / "qrels" / "train.tsv").read_text().splitlines()[1:]
    pairs = [(line.split("\t")[0], line.split("\t")[1]) for line in lines]
    return documents, queries, pairs


def negatives_of(positive: str, documents: dict[str, str]) -> list[str]:
    """Two documents of the next topics of the fixture (never the query's own)."""
    ids = list(documents)
    at = ids.index(positive)
    return [ids[(at + 4) % len(ids)], ids[(at + 7) % len(ids)]]


def write(rows: list[dict], path: Path) -> Path:
    """`rows` as a parquet or JSON-lines file, as the `datasets` library writes them."""
    from datasets import Dataset

    table = Dataset.from_list(rows)
    if path.suffix == ".parquet":
        table.to_parquet(str(path))
    else:
        table.to_json(str(path))  # JSON lines
    return path


def train_overrides(settings: dict[str, object]) -> list[str]:
    """The command-line overrides of a train split's settings."""
    overrides = []
    for name, value in settings.items():
        if isinstance(value, ColumnMapping):
            negatives = ", ".join(value.negatives)
            value = (
                f"{{query: {value.query}, positive: {value.positive}, negatives: [{negatives}]}}"
            )
        overrides.append(f"dataset.train.{name}={value}")
    return overrides


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, dict[str, object]]:
    """Per layout, the settings of a train split that reads its files (one example per
    training pair, tevatron's one per query)."""
    folder = tmp_path_factory.mktemp("hub-data")
    documents, queries, pairs = fixture_texts()
    triplets = [
        {
            "anchor": queries[q],
            "positive": documents[p],
            **{f"negative_{i + 1}": documents[n] for i, n in enumerate(negatives_of(p, documents))},
            "label": list(TEACHER),
        }
        for q, p in pairs
    ]
    mapped = [
        {"question": row["anchor"], "answer": row["positive"], "wrong": [row["negative_1"]]}
        for row in triplets
    ]
    grouped = {q: [p for query, p in pairs if query == q] for q, _ in pairs}

    def passage(doc_id: str) -> dict[str, str]:
        return {"docid": doc_id, "title": doc_id.split("-")[0], "text": documents[doc_id]}

    tevatron = [
        {
            "query_id": q,
            "query": queries[q],
            "positive_passages": [passage(p) for p in positives],
            "negative_passages": [passage(n) for n in negatives_of(positives[0], documents)],
        }
        for q, positives in grouped.items()
    ]
    ids = [
        {
            "query_id": q,
            "document_ids": [*negatives_of(p, documents)[::-1], p],  # the best-scored is last
            "scores": [TEACHER[2], TEACHER[1], TEACHER[0]],
        }
        for q, p in pairs
    ]
    id_triplets = [
        {
            "query_id": q,
            "positive_id": p,
            "negative_id": negatives_of(p, documents)[0],
            "score": TEACHER[0] - TEACHER[1],  # the margin, as bert-ensemble-margin-mse has it
        }
        for q, p in pairs
    ]
    write([{"query_id": q, "text": t} for q, t in queries.items()], folder / "queries.parquet")
    write([{"document_id": d, "text": t} for d, t in documents.items()], folder / "docs.jsonl")
    # sentence-transformers/msmarco's queries and corpus subsets
    write([{"query_id": q, "query": t} for q, t in queries.items()], folder / "st-queries.jsonl")
    write([{"passage_id": d, "passage": t} for d, t in documents.items()], folder / "corpus.jsonl")
    return {
        "sentence_transformers": {"hf_dataset": write(triplets, folder / "st.parquet")},
        "tevatron": {"hf_dataset": write(tevatron, folder / "tevatron.jsonl")},
        "ids_with_scores": {
            "hf_dataset": write(ids, folder / "ids.parquet"),
            "hf_queries": folder / "queries.parquet",
            "hf_documents": folder / "docs.jsonl",
        },
        "id_triplets": {
            "hf_dataset": write(id_triplets, folder / "id-triplets.parquet"),
            "hf_queries": folder / "st-queries.jsonl",
            "hf_documents": folder / "corpus.jsonl",
        },
        "mapped": {
            "hf_dataset": write(mapped, folder / "mapped.jsonl"),
            "hf_columns": ColumnMapping("question", "answer", ["wrong"]),
        },
    }


def hub_overrides(
    model_dir: Path, split: dict[str, object], *extra: str, sampler: str = "batchwise"
) -> list[str]:
    """The tiny experiment trained on a Hub-layout split and tested on the BEIR fixture."""
    tiny = [item for item in tiny_overrides(model_dir) if "dataset.train.beir_folder" not in item]
    return [
        *tiny,
        "dataset.train.beir_folder=null",
        *train_overrides(split),
        f"dataset.test.beir_folder={TINY_BEIR}",
        f"sampler={sampler}",
        "sampler.negatives=2",
        "trainer.max_steps=4",
        "trainer.log_every=1",
        "trainer.checkpoint_every=2",
        *extra,
    ]


def logged_losses(run_dir: Path) -> list[dict[str, str]]:
    """train_log.csv without its timing columns, which differ between runs."""
    with (run_dir / "train_log.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {k: v for k, v in row.items() if k not in ("elapsed_seconds", "samples_per_second")}
        for row in rows
    ]


def aggregate(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())["aggregate"]


class Stopped(Exception):
    """Raised after a checkpoint, as a killed run stops there."""


def train_interrupted_then_resumed(overrides: list[str], run_dir: Path, monkeypatch) -> None:
    """Train until the first checkpoint (step 2), stop there, then resume the run to the end."""
    on_step_end = Checkpointer.on_step_end

    def checkpoint_then_stop(checkpointer: Checkpointer, state: TrainState) -> None:
        on_step_end(checkpointer, state)
        if checkpointer.last is not None:
            raise Stopped

    with monkeypatch.context() as patched:
        patched.setattr(Checkpointer, "on_step_end", checkpoint_then_stop)
        with pytest.raises(Stopped):
            xpretrieval.train(xpretrieval.configure(overrides), run_dir)
    assert not (run_dir / "metrics.json").exists()
    resumed = xpretrieval.configure([*overrides, f"resume={run_dir}"])
    xpretrieval.train(resumed, run_dir)


@pytest.fixture(scope="module")
def straight_runs(tiny_model_dir, layouts, tmp_path_factory):
    """Each layout's run of 4 uninterrupted steps, trained once."""
    runs: dict[str, Path] = {}

    def run(layout: str) -> Path:
        if layout not in runs:
            runs[layout] = tmp_path_factory.mktemp(f"straight-{layout}")
            xpretrieval.train(
                xpretrieval.configure(hub_overrides(tiny_model_dir, layouts[layout])), runs[layout]
            )
        return runs[layout]

    return run


LAYOUTS = ["sentence_transformers", "tevatron", "ids_with_scores", "id_triplets", "mapped"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_trains_and_resumes_exactly(
    layout, layouts, tiny_model_dir, straight_runs, tmp_path, monkeypatch
):
    straight = straight_runs(layout)
    losses = logged_losses(straight)
    assert [row["step"] for row in losses] == ["1", "2", "3", "4"]
    assert all(float(row["loss/total"]) > 0 for row in losses)
    train_interrupted_then_resumed(
        hub_overrides(tiny_model_dir, layouts[layout]), tmp_path, monkeypatch
    )
    assert logged_losses(tmp_path) == losses
    assert aggregate(tmp_path) == aggregate(straight)
    environment = json.loads((tmp_path / "environment.json").read_text())
    assert environment["datasets"]["train"]["name"] == str(layouts[layout]["hf_dataset"])


def test_a_streamed_run_trains_on_the_in_memory_batches_and_resumes_exactly(
    layouts, tiny_model_dir, straight_runs, tmp_path, monkeypatch
):
    overrides = hub_overrides(
        tiny_model_dir, layouts["sentence_transformers"], "dataset.train.streaming=true"
    )
    xpretrieval.train(xpretrieval.configure(overrides), tmp_path / "straight")
    in_memory = straight_runs("sentence_transformers")
    assert logged_losses(tmp_path / "straight") == logged_losses(in_memory)
    train_interrupted_then_resumed(overrides, tmp_path / "resumed", monkeypatch)
    assert logged_losses(tmp_path / "resumed") == logged_losses(in_memory)
    assert aggregate(tmp_path / "resumed") == aggregate(in_memory)


def split_of(settings: dict[str, object], **more: object) -> Split:
    """The train split of those settings, built in Python."""
    given = {name: str(v) if isinstance(v, Path) else v for name, v in settings.items()}
    return Split(**given, **more)  # type: ignore[arg-type]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_streaming_gives_the_in_memory_records_epoch_after_epoch(layout, layouts):
    sampler = BatchwiseSampler(negatives=2)
    in_memory = split_of(layouts[layout]).load()
    streamed = split_of(layouts[layout], streaming=True).load()
    assert len(streamed.training) == len(in_memory.training)
    three_epochs = 3 * len(in_memory.training)
    expected = list(itertools.islice(sampler.records(in_memory, 7), three_epochs))
    assert list(itertools.islice(sampler.records(streamed, 7), three_epochs)) == expected
    assert list(itertools.islice(sampler.records(in_memory, 8), three_epochs)) != expected


def test_a_small_shuffle_buffer_gives_every_example_once_an_epoch_in_a_seeded_order(layouts):
    examples = split_of(layouts["sentence_transformers"], streaming=True, shuffle_buffer=3)
    streamed = examples.load().training
    size = len(streamed)
    first, again = (list(itertools.islice(streamed.epochs(1), 2 * size)) for _ in range(2))
    assert first == again  # seeded: the same order for the same seed, what a resume skips
    whole = split_of(layouts["sentence_transformers"]).load().training
    every = sorted(
        (e.query.text, e.positives[0].text) for e in itertools.islice(whole.epochs(1), size)
    )
    for epoch in (first[:size], first[size:]):
        assert sorted((e.query.text, e.positives[0].text) for e in epoch) == every
    in_memory = list(itertools.islice(whole.epochs(1), size))
    assert first[:size] != in_memory  # a buffer of 3 cannot reach the whole shuffle


@pytest.mark.parametrize(
    ("layout", "loss"),
    [("sentence_transformers", "margin_mse"), ("ids_with_scores", "kl_distillation")],
)
def test_distillation_learns_from_the_datasets_scores(
    layout, loss, layouts, tiny_model_dir, tmp_path
):
    overrides = hub_overrides(
        tiny_model_dir, layouts[layout], f"loss@losses.rank={loss}", sampler="distillation"
    )
    experiment = xpretrieval.configure(overrides)
    assert isinstance(experiment.sampler, DistillationSampler)
    documents, _, _ = fixture_texts()
    expected = {}  # each negative's text -> its teacher score, as the fixture wrote them
    for positive in documents:
        first, second = negatives_of(positive, documents)
        expected[documents[positive], documents[first]] = TEACHER[1]
        expected[documents[positive], documents[second]] = TEACHER[2]
    collection = experiment.dataset.train.load()
    for record in itertools.islice(experiment.sampler.records(collection, 0), 30):
        assert record.teacher_scores[0] == TEACHER[0]
        assert record.teacher_scores[1:] == tuple(
            expected[record.positive.text, negative.text] for negative in record.negatives
        )
    xpretrieval.train(experiment, tmp_path)
    losses = logged_losses(tmp_path)
    assert len(losses) == 4 and all(0 < float(row["loss/rank"]) < float("inf") for row in losses)


def test_id_triplets_read_their_texts_and_the_teachers_margin(layouts):
    documents, queries, pairs = fixture_texts()
    examples = split_of(layouts["id_triplets"]).load().training
    assert examples.has_scores and len(examples) == len(pairs)
    for example in itertools.islice(examples.epochs(0), len(pairs)):
        (positive,), (negative,) = example.positives, example.negatives
        assert (example.query.id, positive.id) in pairs
        assert example.query.text == queries[example.query.id]
        assert negative.id == negatives_of(positive.id, documents)[0]
        assert (positive.text, negative.text) == (documents[positive.id], documents[negative.id])
        assert example.scores == (0.0, -(TEACHER[0] - TEACHER[1]))


def test_integer_ids_find_the_texts_their_sets_hold_as_strings(tmp_path):
    """Ids stored as integers (or as whole floats, as pandas stores an integer column with
    nulls) in the rows find the same ids stored as strings in the text sets."""
    from datasets import Dataset

    rows = tmp_path / "ids.parquet"
    Dataset.from_dict(
        {"query_id": [7], "positive_id": [11.0], "negative_id": [12], "label": [2.5]}
    ).to_parquet(str(rows))
    queries = write([{"query_id": "7", "query": "what"}], tmp_path / "queries.jsonl")
    corpus = write(
        [{"passage_id": d, "passage": f"text {d}"} for d in ("11", "12")], tmp_path / "c.jsonl"
    )
    split = Split(hf_dataset=str(rows), hf_queries=str(queries), hf_documents=str(corpus))
    (example,) = itertools.islice(split.load().training.epochs(0), 1)
    assert (example.query.id, example.positives[0].id, example.negatives[0].id) == (
        "7",
        "11",
        "12",
    )
    assert example.scores == (0.0, -2.5)  # a label column is the margin too


def test_text_sets_holding_whole_float_ids_match_the_rows_string_ids(tmp_path):
    """The other way round: the rows name ids as strings, the text sets hold them as whole
    floats (an integer column with nulls, as pandas writes it); a null id in a set is refused."""
    from datasets import Dataset

    rows = tmp_path / "ids.parquet"
    Dataset.from_dict({"query_id": ["7"], "positive_id": ["11"], "negative_id": ["12"]}).to_parquet(
        str(rows)
    )
    queries = write([{"query_id": 7.0, "query": "what"}], tmp_path / "queries.jsonl")
    corpus = write(
        [{"passage_id": float(d), "passage": f"text {d}"} for d in (11, 12)], tmp_path / "c.jsonl"
    )
    split = Split(hf_dataset=str(rows), hf_queries=str(queries), hf_documents=str(corpus))
    (example,) = itertools.islice(split.load().training.epochs(0), 1)
    assert (example.positives[0].text, example.negatives[0].text) == ("text 11", "text 12")
    write([{"query_id": None, "query": "what"}], queries)
    with pytest.raises(DataError, match=r"queries\.jsonl.*, row 1: expected an id, got None"):
        split.load()
    with pytest.raises(DataError, match="row 3: expected an id, got nan"):
        id_key(float("nan"), "row 3")  # pandas' null in a float column
    assert (id_key(12.0, "row"), id_key(7, "row"), id_key("a7", "row")) == ("12", "7", "a7")


def test_text_columns_beside_id_columns_are_read_as_texts(tmp_path):
    from datasets import Dataset

    path = tmp_path / "both.parquet"
    columns = {"query_id": ["q"], "positive_id": ["a"], "negative_id": ["b"]}
    texts = {"query": ["what"], "positive": ["an answer"], "negative": ["another"]}
    Dataset.from_dict({**columns, **texts}).to_parquet(str(path))
    (example,) = itertools.islice(Split(hf_dataset=str(path)).load().training.epochs(0), 1)
    assert (example.query.text, example.positives[0].text) == ("what", "an answer")


def test_margins_and_scores_become_the_same_teacher_scores():
    assert teacher_scores([5.0, 1.5, 0.5], 2, "row") == (5.0, 1.5, 0.5)
    assert teacher_scores([3.5, 4.5], 2, "row") == (0.0, -3.5, -4.5)  # margins pos - neg_i
    assert teacher_scores(2.0, 1, "row") == (0.0, -2.0)  # one margin, one negative
    with pytest.raises(DataError, match="row: 4 scores for 1 positive and 2 negatives"):
        teacher_scores([1.0, 2.0, 3.0, 4.0], 2, "row")
    assert text_id("bees") == text_id("bees") != text_id("bees ")


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


BAD_DATASETS = {
    "unknown-layout": ({"foo": ["a"], "bar": ["b"]}, {}, "columns foo, bar match no known layout"),
    "mapping-missing-column": (
        {"foo": ["a"], "bar": ["b"]},
        {"hf_columns": ColumnMapping(query="foo", positive="answer")},
        "dataset.train.hf_columns: .* has no column 'answer' \\(its columns: bar, foo\\)",
    ),
    "empty": ({"anchor": [], "positive": []}, {}, "the dataset is empty"),
    "scores-of-another-length": (
        {"anchor": ["q"], "positive": ["p"], "negative": ["n"], "score": [[1.0, 2.0, 3.0]]},
        {},
        "row 1, score: 3 scores for 1 positive and 1 negatives; expected 2 scores",
    ),
    "ids-and-scores-of-other-lengths": (
        {"query_id": ["q"], "document_ids": [["a", "b", "c"]], "scores": [[1.0, 2.0]]},
        {"hf_queries": "QUERIES", "hf_documents": "DOCUMENTS"},
        "row 1: document_ids and scores must be lists of the same length, got 3 document_ids "
        "and 2 scores",
    ),
    "ids-without-their-texts": (
        {"query_id": ["q"], "document_ids": [["a", "b"]], "scores": [[1.0, 2.0]]},
        {},
        "dataset.train.hf_queries: .* give the queries set \\(query_id, text\\)",
    ),
    "id-triplets-without-their-texts": (
        {"query_id": ["q"], "positive_id": ["a"], "negative_id": ["b"]},
        {},
        "dataset.train.hf_queries: .* give the queries set \\(query_id, query\\)",
    ),
    "id-triplets-with-texts-in-other-columns": (
        {"query_id": ["q"], "positive_id": ["a"], "negative_id": ["b"]},
        {"hf_queries": "QUERIES", "hf_documents": "DOCUMENTS"},
        "queries.jsonl, the queries of .*data.parquet: no column query \\(its columns: query_id, "
        "text\\); expected \\(query_id, query\\)",
    ),
    "id-triplets-naming-an-unknown-passage": (
        {"query_id": ["q"], "positive_id": ["a"], "negative_id": ["z"]},
        {"hf_queries": "ST_QUERIES", "hf_documents": "ST_CORPUS"},
        "row 1, negative_id: id 'z' is not in the passages set",
    ),
    "id-triplets-with-a-null-id": (
        {"query_id": ["q"], "positive_id": ["a"], "negative_id": [None]},
        {"hf_queries": "ST_QUERIES", "hf_documents": "ST_CORPUS"},
        "row 1, negative_id: expected an id, got None",
    ),
}


@pytest.mark.parametrize("streaming", [False, True], ids=["in-memory", "streaming"])
@pytest.mark.parametrize("case", sorted(BAD_DATASETS))
def test_a_dataset_that_does_not_fit_is_refused_in_one_line(case, streaming, tmp_path):
    columns, settings, message = BAD_DATASETS[case]
    from datasets import Dataset

    path = tmp_path / "data.parquet"
    Dataset.from_dict(columns).to_parquet(str(path))
    texts = {
        "QUERIES": write([{"query_id": "q", "text": "what"}], tmp_path / "queries.jsonl"),
        "DOCUMENTS": write(
            [{"document_id": d, "text": f"text {d}"} for d in "abc"], tmp_path / "docs.jsonl"
        ),
        "ST_QUERIES": write([{"query_id": "q", "query": "what"}], tmp_path / "st-queries.jsonl"),
        "ST_CORPUS": write(
            [{"passage_id": d, "passage": f"text {d}"} for d in "abc"], tmp_path / "corpus.jsonl"
        ),
    }
    settings = {k: str(texts.get(v, v)) if isinstance(v, str) else v for k, v in settings.items()}
    with pytest.raises(DataError, match=message) as error:
        Split(hf_dataset=str(path), streaming=streaming, **settings).load()
    assert str(path) in one_line(error)


def test_settings_that_cannot_hold_are_refused_when_configured(layouts, tiny_model_dir):
    split = layouts["sentence_transformers"]
    refusals = [
        (["dataset.train.ir_datasets=beir/scifact/train"], "set exactly one of ir_datasets"),
        (["dataset.train.hf_columns={query: a}"], "hf_columns needs the query and positive"),
        (["dataset.train.max_documents=5"], "max_documents and on_disk apply to collections"),
        (["sampler.teacher_run=run.trec"], "brings the teacher's scores with its examples"),
    ]
    for extra, message in refusals:
        overrides = hub_overrides(tiny_model_dir, split, *extra, sampler="distillation")
        with pytest.raises(ConfigError, match=message) as error:
            xpretrieval.configure(overrides)
        one_line(error)
    unknown_role = hub_overrides(tiny_model_dir, split, "dataset.train.hf_columns={answer: b}")
    with pytest.raises(
        ConfigCompositionException, match="Could not override 'dataset.train.hf_columns'"
    ):
        xpretrieval.configure(unknown_role)  # Hydra's own refusal of an unknown key
    test_split = [f"dataset.test.hf_dataset={split['hf_dataset']}", "dataset.test.beir_folder=null"]
    with pytest.raises(ConfigError, match="test.hf_dataset: a dataset of training examples"):
        xpretrieval.configure(hub_overrides(tiny_model_dir, split, *test_split))
    with pytest.raises(ConfigError, match="streaming applies to hf_dataset only"):
        xpretrieval.configure([*tiny_overrides(tiny_model_dir), "dataset.train.streaming=true"])


def test_distillation_from_a_dataset_without_scores_is_refused(layouts, tiny_model_dir, tmp_path):
    overrides = hub_overrides(
        tiny_model_dir, layouts["tevatron"], "loss@losses.rank=margin_mse", sampler="distillation"
    )
    with pytest.raises(DataError, match="its examples carry no teacher scores") as error:
        xpretrieval.train(xpretrieval.configure(overrides), tmp_path)
    one_line(error)


def test_a_hub_training_split_cannot_be_held_out_or_measured(layouts, tiny_model_dir, tmp_path):
    with pytest.raises(DataError, match="so measuring a ranking is impossible") as error:
        split_of(layouts["sentence_transformers"]).load().check_measurable()
    one_line(error)
    overrides = hub_overrides(
        tiny_model_dir,
        layouts["sentence_transformers"],
        "validation.every=2",
        "validation.held_out_queries=2",
    )
    with pytest.raises(DataError, match="holding out validation queries is impossible") as error:
        xpretrieval.train(xpretrieval.configure(overrides), tmp_path)
    one_line(error)


def test_a_cls_normalize_sentence_transformers_folder_evaluates_as_saved(tiny_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling as STPooling

    from xpretrieval.commands.evaluate import run_evaluate
    from xpretrieval.models import Pooling

    folder = tmp_path / "bge-like"
    modules = [Transformer(str(tiny_model_dir)), STPooling(32, pooling_mode="cls"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    overrides = [
        "model=dense",
        f"model.name_or_path={folder}",
        "dataset=beir_folder",
        f"dataset.test.beir_folder={TINY_BEIR}",
        "evaluation.top_k=10",
        "device=cpu",
    ]
    experiment = xpretrieval.configure(overrides, "evaluate")
    assert (experiment.model.pooling, experiment.model.normalize) == (Pooling.cls, True)
    metrics = run_evaluate(experiment, tmp_path / "run")
    assert 0 <= metrics["nDCG@10"] <= 1
    assert "pooling: cls" in (tmp_path / "run" / "config.yaml").read_text()  # as it ran
    ours = experiment.model.build().eval()
    theirs = SentenceTransformer(str(folder), device="cpu")
    documents, queries, _ = fixture_texts()
    texts = {"queries": list(queries.values()), "documents": list(documents.values())}
    with torch.no_grad():
        encoded = {
            "queries": ours.forward_queries(texts["queries"]),
            "documents": ours.forward_documents(texts["documents"]),
        }
    for side, vectors in encoded.items():
        expected = theirs.encode(texts[side], convert_to_tensor=True)
        assert torch.allclose(vectors, expected, atol=1e-5), side
    for given, saved in (("model.pooling=mean", "pooling=cls"), ("model.normalize=false", "")):
        with pytest.raises(ConfigError, match=f"saved with {saved or 'normalize=true'}") as error:
            xpretrieval.configure([*overrides, given], "evaluate")
        one_line(error)
