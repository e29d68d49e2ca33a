"""MTEB evaluates xpretrieval models through `mteb_model`, offline: the BEIR fixture is a local
mteb retrieval task (read from its files), and the nDCG@10 mteb reports equals xpretrieval's own
(`search` + `evaluate`) for each kind of model `load` gives; task prompts reach the model."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
import scipy.sparse
import torch

pytest.importorskip("mteb", reason="mteb is the optional [mteb] extra")

import mteb  # noqa: E402
from datasets import Dataset  # noqa: E402
from mteb.abstasks.retrieval import AbsTaskRetrieval  # noqa: E402
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402
from mteb.models.model_meta import ScoringFunction  # noqa: E402
from mteb.types import PromptType  # noqa: E402

import xpretrieval  # noqa: E402
from tests.conftest import TINY_BEIR  # noqa: E402
from xpretrieval.commands import mteb as mteb_command  # noqa: E402
from xpretrieval.core.errors import ConfigError, UserInputError  # noqa: E402
from xpretrieval.evaluation.mteb import (  # noqa: E402
    MTEBCrossEncoder,
    MTEBEncoder,
    mteb_model,
    with_prompt,
)
from xpretrieval.models.colbert import ColBERT  # noqa: E402
from xpretrieval.models.cross_encoder import CrossEncoder  # noqa: E402
from xpretrieval.models.dense import Dense  # noqa: E402
from xpretrieval.models.encoding import Batching  # noqa: E402
from xpretrieval.models.sparse_embed import SparseEmbed  # noqa: E402
from xpretrieval.models.transformer import TransformerModel  # noqa: E402
from xpretrieval.retrieval.rerank import rerank_candidates  # noqa: E402

INSTRUCTION = "Find the passage that answers the question:"


def task_metadata(name: str, **fields: Any) -> TaskMetadata:
    """Metadata of a local English text retrieval task (no dataset to download)."""
    return TaskMetadata(
        name=name,
        description="The 20-document BEIR fixture of xpretrieval's tests, read from its files.",
        reference="https://github.com/embeddings-benchmark/mteb",
        dataset={"path": "local/tiny_beir", "revision": "fixture"},
        type=fields.pop("type", "Retrieval"),
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score="ndcg_at_10",
        date=("2024-01-01", "2024-01-01"),
        domains=["Encyclopaedic"],
        task_subtypes=[],
        license="cc-by-4.0",
        annotations_creators="expert-annotated",
        dialect=[],
        sample_creation="created",
        bibtex_citation="",
        **fields,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


class TinyBeirRetrieval(AbsTaskRetrieval):
    """The BEIR fixture (tests/fixtures/tiny_beir) as an mteb retrieval task, from its files."""

    metadata = task_metadata("TinyBeirRetrieval")
    # a reranking task gives each query's candidates: here, every document
    rerank_all: ClassVar[bool] = False

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        corpus = [
            {"id": d["_id"], "title": d.get("title", ""), "text": d["text"]}
            for d in read_jsonl(TINY_BEIR / "corpus.jsonl")
        ]
        queries = [
            {"id": q["_id"], "text": q["text"]} for q in read_jsonl(TINY_BEIR / "queries.jsonl")
        ]
        qrels: dict[str, dict[str, int]] = {}
        lines = (TINY_BEIR / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]
        for query_id, doc_id, grade in (line.split("\t") for line in lines if line):
            qrels.setdefault(query_id, {})[doc_id] = int(grade)
        every = [d["id"] for d in corpus]
        split = RetrievalSplitData(
            corpus=Dataset.from_list(corpus),
            queries=Dataset.from_list(queries),
            relevant_docs=qrels,
            top_ranked={q["id"]: every for q in queries} if self.rerank_all else None,
        )
        self.dataset = {"default": {"test": split}}
        self.data_loaded = True


class TinyBeirInstructed(TinyBeirRetrieval):
    """The fixture with a task instruction for queries, as mteb's tasks declare theirs."""

    metadata = task_metadata("TinyBeirInstructed", prompt={"query": INSTRUCTION})


class TinyBeirReranking(TinyBeirRetrieval):
    """The fixture as a reranking task: every document is each query's candidate."""

    metadata = task_metadata("TinyBeirReranking", type="Reranking")
    rerank_all = True


def mteb_ndcg(model: Any, task: AbsTaskRetrieval, tmp_path: Path) -> float:
    """The nDCG@10 that `mteb.evaluate` reports for `model` on `task`, results in `tmp_path`."""
    result = mteb.evaluate(
        model,
        task,
        cache=mteb.ResultCache(tmp_path / "mteb"),
        overwrite_strategy="always",
        encode_kwargs={"batch_size": 4},
        show_progress_bar=False,
    )
    (task_result,) = result.task_results
    return task_result.scores["test"][0]["ndcg_at_10"]


def own_ndcg(model: Any) -> float:
    collection = xpretrieval.Collection.from_beir(TINY_BEIR, "test")
    run = xpretrieval.search(model, collection, k=20)
    return xpretrieval.evaluate(run, collection.qrels, "nDCG@10").aggregate["nDCG@10"]


@pytest.fixture(scope="module")
def saved_models(tiny_model_dir, masked_lm_dir, tmp_path_factory) -> dict[str, Path]:
    """One saved model of each kind `load` tells apart, with a query prompt on the dense one."""
    folder = tmp_path_factory.mktemp("mteb-models")
    configs = {
        "dense": Dense(name_or_path=str(tiny_model_dir), query_prompt="query: "),
        "dense_dot": Dense(name_or_path=str(tiny_model_dir), normalize=False),
        "colbert": ColBERT(name_or_path=str(tiny_model_dir), dim=16),
        "sparse_embed": SparseEmbed(name_or_path=str(masked_lm_dir)),
        "cross_encoder": CrossEncoder(name_or_path=str(tiny_model_dir)),
    }
    saved = {"splade": masked_lm_dir}  # a plain masked LM loads as SPLADE
    for kind, config in configs.items():
        torch.manual_seed(0)
        config.build().save(folder / kind)
        saved[kind] = folder / kind
    return saved


@pytest.mark.parametrize("kind", ["dense", "dense_dot", "splade", "colbert", "sparse_embed"])
def test_mteb_ndcg_equals_xpretrieval_ndcg(kind, saved_models, tmp_path):
    model = xpretrieval.load(saved_models[kind], device="cpu")
    adapter = mteb_model(model)
    assert isinstance(adapter, MTEBEncoder)
    assert isinstance(adapter, mteb.EncoderProtocol)
    ndcg = mteb_ndcg(adapter, TinyBeirRetrieval(), tmp_path)
    assert ndcg == pytest.approx(own_ndcg(model), abs=1e-4)
    assert 0 < ndcg < 1  # a random model: neither nothing nor everything found


@pytest.mark.parametrize("kind", ["dense", "splade", "colbert", "cross_encoder"])
def test_mteb_reranking_equals_xpretrieval_reranking(kind, saved_models, tmp_path):
    """A reranking task (every document a candidate): mteb scores the candidates with the
    model's `similarity` (bi-encoders, SPLADE's rows dense) or `predict` (cross-encoders)."""
    model = xpretrieval.load(saved_models[kind], device="cpu")
    adapter = mteb_model(model)
    if kind == "cross_encoder":
        assert isinstance(adapter, MTEBCrossEncoder)
        assert isinstance(adapter, mteb.CrossEncoderProtocol)
        assert not isinstance(adapter, mteb.EncoderProtocol)  # mteb would search with it
    collection = xpretrieval.Collection.from_beir(TINY_BEIR, "test")
    every = [(doc_id, 0.0) for doc_id in collection.documents]
    candidates = {query_id: every for query_id in collection.queries}
    run = rerank_candidates(model, collection, candidates, Batching(4), torch.device("cpu")).run
    own = xpretrieval.evaluate(run, collection.qrels, "nDCG@10").aggregate["nDCG@10"]
    assert mteb_ndcg(adapter, TinyBeirReranking(), tmp_path) == pytest.approx(own, abs=1e-4)


@pytest.fixture
def read_texts(monkeypatch) -> list[tuple[bool, str]]:
    """(is_query, text) of every text a model reads, its prompt in front."""
    seen: list[tuple[bool, str]] = []
    original = TransformerModel.prompted

    def spy(self, texts, is_query):
        prompted = original(self, texts, is_query)
        seen.extend((is_query, text) for text in prompted)
        return prompted

    monkeypatch.setattr(TransformerModel, "prompted", spy)
    return seen


def read_as(seen: list[tuple[bool, str]], is_query: bool) -> list[str]:
    return [text for query, text in seen if query is is_query]


QUERY = "what makes bread rise"  # a judged query (mteb keeps those only)
DOCUMENT = "Bee Honey bees pollinate flowering plants and live in large colonies."


def test_the_models_own_prompts_apply_and_the_task_instruction_waits_for_a_template(
    saved_models, read_texts, tmp_path
):
    adapter = mteb_model(xpretrieval.load(saved_models["dense"], device="cpu"))
    mteb_ndcg(adapter, TinyBeirInstructed(), tmp_path)
    assert "query: " + QUERY in read_as(read_texts, True)  # the saved query_prompt
    assert DOCUMENT in read_as(read_texts, False)  # title and text, no document prompt
    assert not any(INSTRUCTION in text for _, text in read_texts)


def test_a_task_instruction_reaches_the_queries_and_scores_as_a_configured_prompt(
    saved_models, read_texts, tmp_path
):
    """With `instruction_template`, the task's instruction is the query prompt (in place of
    the model's): mteb's nDCG@10 is xpretrieval's for the model given that prompt."""
    model = xpretrieval.load(saved_models["dense"], device="cpu")
    adapter = mteb_model(model, instruction_template="Instruct: {instruction}\nQuery: ")
    assert adapter.mteb_model_meta.use_instructions
    ndcg = mteb_ndcg(adapter, TinyBeirInstructed(), tmp_path)
    prompt = f"Instruct: {INSTRUCTION}\nQuery: "
    queries = read_as(read_texts, True)
    assert prompt + QUERY in queries
    assert all(text.startswith(prompt) for text in queries)
    assert DOCUMENT in read_as(read_texts, False)  # documents have no instruction
    read_texts.clear()
    assert ndcg == pytest.approx(own_ndcg(with_prompt(model, True, prompt)), abs=1e-4)
    assert prompt + QUERY in read_as(read_texts, True)  # the same texts, read by search
    assert model.config.query_prompt == "query: "  # the loaded model itself is unchanged


def test_prompts_by_task_name_replace_the_models_own(saved_models, read_texts, tmp_path):
    model = xpretrieval.load(saved_models["dense"], device="cpu")
    prompts = {"TinyBeirRetrieval-query": "search: ", "Retrieval-document": "passage: "}
    mteb_ndcg(mteb_model(model, prompts=prompts), TinyBeirRetrieval(), tmp_path)
    assert "search: " + QUERY in read_as(read_texts, True)
    assert "passage: " + DOCUMENT in read_as(read_texts, False)
    assert not any(text.startswith("query: ") for text in read_as(read_texts, True))


def test_symmetric_tasks_read_as_documents_with_the_tasks_prompt(saved_models, read_texts):
    """STS has no `prompt_type`: the document side reads its texts, with the prompt `prompts`
    gives its task type (no model prompt), or the task's instruction with a template."""
    sts = mteb.get_task("STS12").metadata
    model = xpretrieval.load(saved_models["dense"], device="cpu")
    batches = [{"text": ["bees live in colonies"]}]
    vectors = mteb_model(model, prompts={"STS": "sts: "}).encode(
        batches, task_metadata=sts, hf_split="test", hf_subset="default"
    )
    assert vectors.shape == (1, 32)
    instructed = mteb_model(model, instruction_template="{instruction} | ")
    instructed.encode(batches, task_metadata=sts, hf_split="test", hf_subset="default")
    instruction = instructed.get_task_instruction(sts, None)
    assert instruction.endswith(" | ") and len(instruction) > len(" | ")
    assert read_texts == [
        (False, "sts: bees live in colonies"),
        (False, instruction + "bees live in colonies"),
    ]
    splade = mteb_model(xpretrieval.load(saved_models["splade"], device="cpu"))
    weights = splade.encode(batches, task_metadata=sts, hf_split="test", hf_subset="default")
    assert isinstance(weights, torch.Tensor) and weights.ndim == 2  # vocabulary-sized vectors


def test_similarity_is_the_models_score(saved_models):
    """Dense (normalised: a cosine), SPLADE's CSR rows and ColBERT's packed vectors are scored
    by the model itself; `similarity_pairwise` is the diagonal of `similarity`."""
    metadata = TinyBeirRetrieval.metadata
    texts = [{"text": ["bees live in colonies", "lava and ash", "a comet's tail"]}]
    for kind in ("dense", "splade", "colbert"):
        model = xpretrieval.load(saved_models[kind], device="cpu")
        adapter = mteb_model(model)
        reps = {
            prompt_type: adapter.encode(
                texts,
                task_metadata=metadata,
                hf_split="test",
                hf_subset="default",
                prompt_type=prompt_type,
            )
            for prompt_type in (PromptType.query, PromptType.document)
        }
        if kind == "splade":
            assert scipy.sparse.issparse(reps[PromptType.document])
        queries = model.encode_queries(texts[0]["text"])
        documents = model.encode_documents(texts[0]["text"])
        expected = model.score(queries, documents)
        scores = adapter.similarity(reps[PromptType.query], reps[PromptType.document])
        torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)
        pairwise = adapter.similarity_pairwise(reps[PromptType.query], reps[PromptType.document])
        torch.testing.assert_close(pairwise, expected.diagonal(), atol=1e-5, rtol=1e-5)
    dense = mteb_model(xpretrieval.load(saved_models["dense"], device="cpu"))
    assert dense.mteb_model_meta.similarity_fn_name is ScoringFunction.COSINE
    assert dense.mteb_model_meta.name == "local/dense"


def test_what_mteb_cannot_ask_of_a_model_is_refused_clearly(saved_models):
    colbert = mteb_model(xpretrieval.load(saved_models["colbert"], device="cpu"))
    sts = mteb.get_task("STS12").metadata
    with pytest.raises(ConfigError, match="retrieval and reranking tasks only, not STS12"):
        colbert.encode([{"text": ["a"]}], task_metadata=sts, hf_split="test", hf_subset="default")
    dense = mteb_model(xpretrieval.load(saved_models["dense"], device="cpu"))
    with pytest.raises(ConfigError, match="float32 representations only"):
        dense.encode(
            [{"text": ["a"]}],
            task_metadata=sts,
            hf_split="test",
            hf_subset="default",
            precision="int8",
        )
    with pytest.raises(ConfigError, match="organization/model"):
        mteb_model(dense.model, name="tiny")
    with pytest.raises(ConfigError, match="must contain '{instruction}'"):
        mteb_model(dense.model, instruction_template="Instruct: ")
    with pytest.raises(ConfigError, match="cross-encoder reads its own"):
        mteb_model(saved_models["cross_encoder"], prompts={"query": "q: "}, device="cpu")
    binary = copy.copy(dense.model)  # trained for binary search: mteb would score its floats
    binary.config = replace(dense.model.config, quantization="binary")
    with pytest.raises(ConfigError, match="^model.quantization=binary: .* index=quantized"):
        mteb_model(binary)


def test_the_command_runs_mteb_and_prints_the_main_score(
    saved_models, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(mteb, "get_tasks", lambda tasks: [TinyBeirRetrieval()])
    model = saved_models["dense_dot"]
    arguments = [str(model), "--tasks", "TinyBeirRetrieval", "--results", str(tmp_path)]
    mteb_command.main([*arguments, "--device", "cpu", "--batch-size", "4"])
    printed = capsys.readouterr().out
    score = float(printed.split("TinyBeirRetrieval: ndcg_at_10=")[1].split()[0])
    assert score == pytest.approx(own_ndcg(xpretrieval.load(model, device="cpu")), abs=2e-4)
    assert list(tmp_path.rglob("TinyBeirRetrieval.json")), "mteb wrote no result file"
    with pytest.raises(UserInputError, match="KEY=TEXT"):
        mteb_command.main([*arguments, "--prompt", "query"])


def test_the_command_names_an_unknown_task():
    with pytest.raises(UserInputError, match="NoSuchTask"):
        mteb_command.main(["any-model", "--tasks", "NoSuchTask"])


def test_the_documented_example_runs(saved_models, tmp_path, monkeypatch, capsys):
    """docs/interoperability.md's MTEB example, on the fixture and a tiny model in place of
    SciFact and all-MiniLM-L6-v2 (names and folders are the only changes)."""
    page = (Path(__file__).parent.parent / "docs" / "interoperability.md").read_text()
    section = page.split("\n## MTEB\n", 1)[1].split("\n## ", 1)[0]
    code = "\n".join(re.findall(r"```python\n(.*?)```", section, flags=re.S))
    stand_ins = {
        "sentence-transformers/all-MiniLM-L6-v2": str(saved_models["dense"]),
        '"outputs/mteb"': repr(str(tmp_path / "mteb")),
    }
    for name, stand_in in stand_ins.items():
        assert name in code, f"the documented example no longer mentions {name}"
        code = code.replace(name, stand_in)
    monkeypatch.setattr(mteb, "get_tasks", lambda tasks: [TinyBeirInstructed()])
    exec(compile(code, "docs/interoperability.md", "exec"), {})  # noqa: S102  (our own docs)
    assert "TinyBeirInstructed" in capsys.readouterr().out
