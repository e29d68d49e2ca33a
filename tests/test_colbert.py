"""ColBERT: MaxSim against a hand computation, padding and query augmentation, saving, and
re-ranking a first stage end to end."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY_BEIR
from tests.test_cli import train_reranking
from xpretrieval import load
from xpretrieval.data.collection import Collection
from xpretrieval.models import ColBERT, ColBERTEncoder
from xpretrieval.models import colbert as module
from xpretrieval.models.colbert import maxsim
from xpretrieval.models.encoding import Batching
from xpretrieval.retrieval.rerank import FirstStage, rerank_candidates


def packed(vectors: list[list[list[float]]], mask: list[list[float]]) -> torch.Tensor:
    as_float = {"dtype": torch.float32}
    return torch.cat(
        [torch.tensor(vectors, **as_float), torch.tensor(mask, **as_float)[..., None]], -1
    )


def test_maxsim_matches_hand_computation_and_ignores_padding():
    # query tokens a=[1,0], b=[0,1]; document 0 tokens [1,0], [0.6,0.8] and a padding token
    # [5,5] that must not count; document 1 only [-1, 0]
    query = packed([[[1, 0], [0, 1]]], [[1, 1]])
    documents = packed(
        [[[1, 0], [0.6, 0.8], [5, 5]], [[-1, 0], [0, 0], [0, 0]]],
        [[1, 1, 0], [1, 0, 0]],
    )
    # doc 0: a -> max(1, 0.6) = 1, b -> max(0, 0.8) = 0.8; doc 1: a -> -1, b -> 0
    assert maxsim(query, documents).tolist() == [[pytest.approx(1.8), pytest.approx(-1.0)]]


def test_blocked_maxsim_equals_one_block(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    queries = torch.cat([torch.randn(3, 4, 5, generator=generator), torch.ones(3, 4, 1)], -1)
    documents = torch.cat([torch.randn(7, 6, 5, generator=generator), torch.ones(7, 6, 1)], -1)
    whole = maxsim(queries, documents)
    monkeypatch.setattr(module, "SCORE_BLOCK_ELEMENTS", 1)  # one document per block
    assert torch.allclose(maxsim(queries, documents), whole)


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> ColBERTEncoder:
    torch.manual_seed(0)
    return ColBERT(
        name_or_path=str(tiny_model_dir), dim=8, query_max_length=8, doc_max_length=16
    ).build()


def test_queries_are_augmented_with_masks_and_documents_padded(model):
    with torch.no_grad():
        queries = model.forward_queries(["lava", "honey bees pollinate"])
        documents = model.forward_documents(["lava", "honey bees pollinate flowering plants"])
    assert queries.shape == (2, 8, 9) and documents.shape == (2, 16, 9)
    assert queries[..., -1].eq(1).all()  # [MASK] augmentation: every query position scores
    assert documents[0, :, -1].sum() == 3  # [CLS] lava [SEP], then padding
    norms = documents[0, :3, :-1].norm(dim=-1)
    assert torch.allclose(norms, torch.ones(3)) and documents[0, 3:].abs().sum() == 0


def test_save_and_load_round_trip(model, tmp_path):
    model.save(tmp_path / "colbert")
    loaded = load(tmp_path / "colbert")
    with torch.no_grad():
        assert torch.allclose(loaded.forward_queries(["bees"]), model.forward_queries(["bees"]))


def test_rerank_orders_bm25_candidates_by_the_model(model):
    test = Collection.from_beir(TINY_BEIR, "test")
    first_stage = FirstStage(top_k=3)
    candidates = first_stage.run(test, "evaluation.rerank")
    retrieval = rerank_candidates(model, test, candidates, Batching(4), device=torch.device("cpu"))
    for query_id, ranking in retrieval.run.items():
        assert {d for d, _ in ranking} == {d for d, _ in candidates[query_id]}
        scores = [s for _, s in ranking]
        assert scores == sorted(scores, reverse=True)
    assert retrieval.statistics["candidates_per_query"] <= 3


def test_colbert_experiment_end_to_end(tiny_model_dir, tmp_path):
    train_reranking("colbert", tiny_model_dir, tmp_path, "model.dim=8")
    assert (tmp_path / "checkpoints" / "step-0000006" / "projection.safetensors").is_file()
