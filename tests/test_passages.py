"""Long documents as passages (`dataset.<split>.passages`): windows of words cover every word with
the configured overlap; MaxP, FirstP and SumP score a document exactly from its passages' scores,
in search and in re-ranking; runs name documents only; text past the truncation point is found
with passages and missed without; bad settings are refused naming their key; training reads the
first or the best passage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import xpretrieval
from tests import inprocess
from tests.conftest import TINY_BEIR, tiny_overrides
from xpretrieval.core.errors import ConfigError
from xpretrieval.data.collection import Collection
from xpretrieval.data.dataset import Split
from xpretrieval.data.passages import Aggregate, Passages, PositivePassage
from xpretrieval.data.records import BatchwiseRecord, Text
from xpretrieval.retrieval.passages import document_ranking, search_passages
from xpretrieval.training.passage_positives import PassagePicker

WORDS = "bees lava whales coffee chess glaciers violin tomatoes comet bread".split()


def long_text(n: int, offset: int = 0) -> str:
    """`n` words of the fixture's vocabulary, in a repeating order."""
    return " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(n))


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    """The tiny dense bi-encoder (cosine scores), reading at most 32 document tokens."""
    experiment = xpretrieval.configure(tiny_overrides(tiny_model_dir), command="evaluate")
    return experiment.model.build()


@pytest.mark.parametrize(
    ("words", "length", "stride"),
    [(0, 4, 2), (3, 4, 2), (4, 4, 2), (5, 4, 2), (11, 4, 2), (12, 4, 4), (13, 5, 3), (30, 7, 1)],
)
def test_windows_cover_every_word_with_the_overlap(words, length, stride):
    text = long_text(words)
    windows = [w.split() for w in Passages(length=length, stride=stride).every_window(text)]
    tokens = text.split()
    if words <= length:
        assert windows == [tokens]  # a document that fits one window is read whole
        return
    starts = [i * stride for i in range(len(windows))]
    for start, window in zip(starts, windows, strict=True):
        assert window == tokens[start : start + length]  # each window: length words from start
    # consecutive windows share length - stride words; the last reaches the last word, and is
    # needed (the one before it does not)
    assert all(b - a == stride for a, b in zip(starts, starts[1:], strict=False))
    assert starts[-1] + length >= words > starts[-2] + length
    covered = {
        start + i for start, window in zip(starts, windows, strict=True) for i in range(len(window))
    }
    assert covered == set(range(words))


def test_passage_windows_read_alike_in_order_and_out_of_order():
    documents = {"long": long_text(11), "short": "Short, as written.", "empty": ""}
    windows = Passages(length=4, stride=2).windows(documents)
    ids, texts = list(windows.ids()), list(windows.texts())
    assert ids == ["long 0", "long 1", "long 2", "long 3", "long 4", "short 0", "empty 0"]
    assert texts == [windows.texts()[i] for i in reversed(range(len(windows)))][::-1]
    assert texts[5] == "Short, as written." and texts[6] == ""
    assert dict(windows) == dict(zip(ids, texts, strict=True))
    assert windows.passage_ids("long") == ids[:5]
    assert {windows.document_of(p) for p in ids} == set(documents)
    assert windows.document_rows(torch.tensor([0, 4, 5, 6, -1]).numpy()).tolist() == [
        0,
        0,
        1,
        2,
        -1,
    ]
    first = Passages(length=4, stride=2, aggregate=Aggregate.first).windows(documents)
    assert list(first.texts()) == [texts[0], texts[5], texts[6]]  # FirstP encodes first windows


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [
        (Aggregate.max, {"a": 0.9, "b": 0.5}),
        (Aggregate.sum, {"a": 1.3, "b": 0.5}),
    ],
)
def test_document_ranking_combines_passage_scores(aggregate, expected):
    hits = [("a", 0.9), ("b", 0.5), ("a", 0.4)]
    ranking = document_ranking(hits, aggregate, k=10)
    assert [doc for doc, _ in ranking] == ["a", "b"]
    assert dict(ranking) == pytest.approx(expected)
    assert document_ranking(hits, aggregate, k=1) == ranking[:1]


def hand_scores(model, query: str, texts: dict[str, str], passages: Passages) -> dict[str, float]:
    """Each document's score computed here: its windows encoded one by one, scored against the
    query, combined by the aggregate."""
    q = model.encode_queries([query])
    scores = {}
    for doc_id, text in texts.items():
        windows = passages.every_window(text)
        if passages.aggregate is Aggregate.first:
            windows = windows[:1]
        each = model.similarity(q, model.encode_documents(windows))[0].tolist()
        scores[doc_id] = sum(each) if passages.aggregate is Aggregate.sum else max(each)
    return scores


@pytest.mark.parametrize("aggregate", list(Aggregate))
def test_search_scores_documents_by_their_passages_exactly(model, aggregate):
    texts = {"d0": long_text(23), "d1": long_text(17, offset=3), "d2": "Bread is baked."}
    queries = {"q0": "lava whales coffee", "q1": "bread comet"}
    passages = Passages(length=6, stride=3, aggregate=aggregate)
    collection = Collection("long", texts, queries, {}, passages=passages)
    run = xpretrieval.search(model, collection, k=10)
    for query_id, query in queries.items():
        expected = hand_scores(model, query, texts, passages)
        assert dict(run[query_id]) == pytest.approx(expected, abs=1e-5)
        found = [score for _, score in run[query_id]]
        assert found == sorted(found, reverse=True)


def test_search_finds_k_documents_however_many_passages_each_has(model):
    # one document of many windows, many of one: k documents need a deeper passage search
    texts = {"many": long_text(200), **{f"one-{i}": WORDS[i] for i in range(len(WORDS))}}
    collection = Collection("deep", texts, {"q": "lava"}, {}, passages=Passages(length=4))
    run = xpretrieval.search(model, collection, k=5)
    assert len(run["q"]) == 5 and len({doc for doc, _ in run["q"]}) == 5
    assert {doc for doc, _ in run["q"]} <= set(texts)


def write_beir(folder: Path, corpus: dict[str, str], queries: dict[str, str], qrels: dict) -> Path:
    """A BEIR-layout folder: corpus.jsonl, queries.jsonl and qrels/test.tsv."""
    (folder / "qrels").mkdir(parents=True)
    lines = (json.dumps({"_id": doc_id, "text": text}) for doc_id, text in corpus.items())
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    lines = (json.dumps({"_id": q, "text": text}) for q, text in queries.items())
    (folder / "queries.jsonl").write_text("\n".join(lines) + "\n")
    rows = [f"{q}\t{doc}\t1" for q, docs in qrels.items() for doc in docs]
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows))
    return folder


def beir_with_long_document(folder: Path) -> Path:
    """The fixture's documents and a long one whose relevant words (the query's, exactly) come
    after 48 unrelated words: past model.doc_max_length=32 tokens, in a window of their own."""
    corpus = {
        json.loads(line)["_id"]: json.loads(line)["text"]
        for line in (TINY_BEIR / "corpus.jsonl").read_text().splitlines()
    }
    query = "humpback whales sing long songs in the ocean"
    corpus["whale-0"] = "Humpback whales sing."  # close to the query, not it
    corpus["long"] = long_text(48) + " " + query
    return write_beir(folder, corpus, {"q": query}, {"q": ["long"]})


def evaluate(tiny_model_dir: Path, folder: Path, run_dir: Path, *overrides: str) -> dict:
    """`evaluate` of the tiny model on the BEIR folder; its metrics.json."""
    settings = [
        *tiny_overrides(tiny_model_dir),
        f"dataset.test.beir_folder={folder}",
        "evaluation.metrics=[RR@10]",
        *overrides,
    ]
    inprocess.run("evaluate", settings, run_dir)
    return json.loads((run_dir / "metrics.json").read_text())


def run_file(run_dir: Path) -> list[list[str]]:
    return [line.split() for line in (run_dir / "run.trec").read_text().splitlines()]


def test_text_past_the_truncation_point_is_found_with_passages_only(tiny_model_dir, tmp_path):
    folder = beir_with_long_document(tmp_path / "beir")
    whole = evaluate(tiny_model_dir, folder, tmp_path / "whole")
    windows = ["dataset.test.passages.length=8"]
    passages = evaluate(tiny_model_dir, folder, tmp_path / "passages", *windows)
    assert passages["aggregate"]["RR@10"] == 1.0  # its last window is the query itself
    assert whole["aggregate"]["RR@10"] < 1.0  # cut at 32 tokens, it reads only the others
    first = run_file(tmp_path / "passages")[0]
    assert first[2] == "long" and float(first[4]) == pytest.approx(1.0, abs=1e-5)
    assert passages["index"]["passages_searched_per_query"] > 0
    assert passages["index"]["passages_cut_share"] == 0.0  # 8 words fit 32 tokens


@pytest.mark.parametrize("rerank", [False, True])
def test_runs_name_documents_once_each(tiny_model_dir, tmp_path, rerank):
    overrides = ["dataset.test.passages.length=4", "dataset.test.passages.stride=2"]
    if rerank:
        overrides.append("evaluation.rerank.top_k=5")
    metrics = evaluate(tiny_model_dir, TINY_BEIR, tmp_path, *overrides)
    corpus = {
        json.loads(line)["_id"] for line in (TINY_BEIR / "corpus.jsonl").read_text().splitlines()
    }
    lines = run_file(tmp_path)
    assert {fields[2] for fields in lines} <= corpus  # documents, never passage ids
    pairs = [(fields[0], fields[2]) for fields in lines]
    assert len(pairs) == len(set(pairs))
    assert all(len(fields) == 6 for fields in lines)
    assert metrics["documents"] == len(corpus)
    if rerank:
        assert metrics["index"]["passages_encoded"] > metrics["index"]["candidates_per_query"]


def test_reranking_scores_each_candidate_by_its_best_passage(model, tiny_model_dir, tmp_path):
    overrides = [
        "dataset.test.passages.length=4",
        "dataset.test.passages.stride=2",
        "evaluation.rerank.top_k=3",
    ]
    evaluate(tiny_model_dir, TINY_BEIR, tmp_path, *overrides)
    test = Collection.from_beir(TINY_BEIR, "test")
    passages = Passages(length=4, stride=2)
    for query_id, _, doc_id, _, score, _ in run_file(tmp_path)[:6]:
        texts = {doc_id: test.documents[doc_id]}
        expected = hand_scores(model, test.queries[query_id], texts, passages)[doc_id]
        assert float(score) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset.test.passages.length=0"], "dataset.test.passages.length must be >= 1"),
        (
            ["dataset.test.passages.length=8", "dataset.test.passages.stride=9"],
            "dataset.test.passages.stride must be in [1, 8]",
        ),
        (["dataset.test.passages.stride=4"], "dataset.test.passages.stride applies to windows"),
        (["dataset.test.passages.aggregate=sum"], "dataset.test.passages.aggregate applies"),
        (["dataset.test.passages.length=33"], "dataset.test.passages.length=33"),
        (
            ["dataset.test.passages.length=8", "dataset.test.passages.positive=best"],
            "dataset.test.passages.positive",
        ),
        (["dataset.test.passages.aggregate=mean"], "dataset.test.passages.aggregate"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(tiny_model_dir, overrides, message):
    with pytest.raises(Exception) as refused:  # ConfigError, or Hydra's for an unknown name
        xpretrieval.configure([*tiny_overrides(tiny_model_dir), *overrides], command="evaluate")
    assert message in str(refused.value)


def test_a_ranker_of_whole_documents_is_refused_passages():
    overrides = ["model=bm25", "dataset=beir_folder", f"dataset.test.beir_folder={TINY_BEIR}"]
    with pytest.raises(ConfigError, match="dataset.test.passages: a Bm25 model ranks whole"):
        xpretrieval.configure([*overrides, "dataset.test.passages.length=8"], command="evaluate")


def test_best_passages_need_records_with_a_positive(tiny_model_dir):
    overrides = [
        *tiny_overrides(tiny_model_dir),
        "sampler=pointwise",
        "trainer=pointwise",
        "loss@losses.rank=bce",
        "dataset.train.passages.length=4",
        "dataset.train.passages.positive=best",
    ]
    with pytest.raises(ConfigError, match="dataset.train.passages.positive=best"):
        xpretrieval.configure(overrides)


def test_first_passages_replace_every_document_text(model):
    record = BatchwiseRecord(
        Text("q", "lava whales"),
        Text("p", long_text(10)),
        (Text("n1", long_text(9, offset=2)), Text("n2", "short negative")),
    )
    picked = PassagePicker(Passages(length=4, stride=2), model)([record])[0]
    assert picked.query == record.query
    assert picked.positive == Text("p", long_text(4))
    assert picked.negatives == (Text("n1", long_text(4, offset=2)), Text("n2", "short negative"))


def test_the_best_passage_is_the_one_the_model_scores_highest(model):
    passages = Passages(length=4, stride=4, positive=PositivePassage.best)
    query = long_text(4, offset=5)  # exactly the second window of the positive: cosine 1
    records = [
        BatchwiseRecord(Text("q", query), Text("p", long_text(12, offset=1)), (Text("n", "x"),)),
        BatchwiseRecord(Text("r", "bread"), Text("s", "fits one window"), (Text("n", "x"),)),
    ]
    model.train()
    picked = PassagePicker(passages, model)(records)
    assert model.training  # put back as the learner left it
    assert picked[0].positive.text == query
    assert picked[1].positive.text == "fits one window"
    windows = passages.every_window(records[0].positive.text)
    scores = model.similarity(model.encode_queries([query]), model.encode_documents(windows))[0]
    assert windows[int(scores.argmax())] == query
    model.eval()


@pytest.mark.parametrize("positive", ["first", "best"])
def test_training_with_passages_runs_end_to_end(tiny_model_dir, tmp_path, positive):
    overrides = [
        *tiny_overrides(tiny_model_dir),
        "trainer.max_steps=2",
        "dataset.train.passages.length=4",
        "dataset.train.passages.stride=2",
        f"dataset.train.passages.positive={positive}",
        "dataset.test.passages.length=4",
        "dataset.test.passages.stride=2",
        "validation.every=1",
        "validation.held_out_queries=2",
    ]
    metrics = inprocess.train(overrides, tmp_path)
    assert all(math.isfinite(value) for value in metrics["aggregate"].values())
    assert metrics["index"]["passages_searched_per_query"] > 0


def test_queries_held_out_of_a_split_keep_its_passages():
    passages = Passages(length=4)
    train = Split(beir_folder=str(TINY_BEIR), split="train", passages=passages).load()
    kept, held = train.hold_out(2, seed=0)
    assert kept.passages == held.passages == passages
    assert "read as windows of 4 words, 4 apart, scored by max" in repr(held)


def test_a_ranker_refuses_a_collection_with_passages_from_python():
    from xpretrieval.models.bm25 import Bm25

    collection = Collection("c", {"d": long_text(9)}, {"q": "lava"}, {}, passages=Passages(4))
    with pytest.raises(ConfigError, match="passages: a Bm25Retriever model ranks whole"):
        xpretrieval.search(Bm25().build(), collection)


def test_shards_and_saved_indexes_hold_the_passages(tiny_model_dir, tmp_path):
    windows = ["dataset.test.passages.length=4", "dataset.test.passages.stride=2"]
    evaluate(tiny_model_dir, TINY_BEIR, tmp_path / "plain", *windows, "index.save=true")
    evaluate(tiny_model_dir, TINY_BEIR, tmp_path / "shards", *windows, "evaluation.shard_size=7")
    index = f"index.load={tmp_path / 'plain' / 'index'}"
    evaluate(tiny_model_dir, TINY_BEIR, tmp_path / "loaded", *windows, index)
    plain = run_file(tmp_path / "plain")
    assert run_file(tmp_path / "shards") == plain
    assert run_file(tmp_path / "loaded") == plain
    with pytest.raises(ConfigError, match="the documents' ids differ"):  # whole documents
        evaluate(tiny_model_dir, TINY_BEIR, tmp_path / "whole", index)


class SpentIndex:
    """An approximate index that finds at most `reach` passages a query, as an IVF index with
    few lists probed does (-1 past them), and records the depths it was asked for."""

    def __init__(self, reach: int) -> None:
        self.reach, self.depths = reach, []

    def search(self, queries: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.depths.append(depth)
        rows = torch.full((len(queries), depth), -1)
        rows[:, : self.reach] = torch.arange(min(depth, self.reach))
        return -torch.arange(depth).float().expand(len(queries), depth), rows


def test_a_spent_approximate_index_is_not_searched_deeper_and_deeper():
    documents = {f"d{i}": " ".join(f"w{j}" for j in range(12)) for i in range(50)}
    windows = Passages(length=4, stride=4).windows(documents)  # 3 windows a document
    index = SpentIndex(reach=2)
    run, depth = search_passages(index, torch.zeros(1, 4), ["q"], windows, k=10)
    assert index.depths == [30]  # once: the index gave 2 rows of 30 asked, it has no more
    assert [doc for doc, _ in run["q"]] == ["d0"] and depth == 30
