"""SparseEmbed: scores against hand computations and a brute-force loop, padding-free term
contexts, saving, training through the framework's step and neural-cherche's signature."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xpretrieval import load
from xpretrieval.losses import BatchScores
from xpretrieval.models import SparseEmbed, SparseEmbedEncoder
from xpretrieval.models import sparse_embed as module
from xpretrieval.models.sparse_embed import pack, sparse_embed_scores, unpack
from xpretrieval.training.sparse_embed import train_sparse_embed

TRIPLES = (
    ["what do honey bees pollinate", "where does lava flow"],
    ["honey bees pollinate flowering plants", "lava flows from volcanoes"],
    ["glaciers carve valleys", "honey is sweet"],
)


def packed(ids: list[list[int]], weights: list[list[float]], embeddings: list) -> torch.Tensor:
    return pack(torch.tensor(ids), torch.tensor(weights), torch.tensor(embeddings))


def test_scores_match_hand_computation():
    # query terms 3 and 5; the document activates 5 and 7, and holds 3 with weight 0
    query = packed([[3, 5]], [[1.0, 2.0]], [[[1.0, 0.0], [0.0, 1.0]]])
    document = packed([[5, 7, 3]], [[0.5, 1.0, 0.0]], [[[2.0, 3.0], [9.0, 9.0], [4.0, 4.0]]])
    sparse, dense = sparse_embed_scores(query, document)
    assert sparse.item() == pytest.approx(2.0 * 0.5)  # only term 5 is shared and activated
    assert dense.item() == pytest.approx(0.0 * 2.0 + 1.0 * 3.0)  # embeddings of term 5


def brute_force(queries: torch.Tensor, documents: torch.Tensor) -> tuple[list, list]:
    sparse, dense = [], []
    for q_ids, q_w, q_e in zip(*unpack(queries), strict=True):
        sparse.append([]), dense.append([])
        for d_ids, d_w, d_e in zip(*unpack(documents), strict=True):
            s = e = 0.0
            for a, term in enumerate(q_ids.tolist()):
                for b, other in enumerate(d_ids.tolist()):
                    if term == other and q_w[a] > 0 and d_w[b] > 0:
                        s += (q_w[a] * d_w[b]).item()
                        e += (q_e[a] @ d_e[b]).item()
            sparse[-1].append(s), dense[-1].append(e)
    return sparse, dense


def random_reps(generator: torch.Generator, n: int, k: int, vocabulary: int) -> torch.Tensor:
    ids = torch.stack([torch.randperm(vocabulary, generator=generator)[:k] for _ in range(n)])
    weights = torch.rand(n, k, generator=generator)
    weights[torch.rand(n, k, generator=generator) < 0.3] = 0.0  # some terms not activated
    return pack(ids, weights, torch.randn(n, k, 3, generator=generator))


@settings(max_examples=25, deadline=None)
@given(
    n_queries=st.integers(1, 4),
    n_documents=st.integers(1, 6),
    block=st.sampled_from([1, 7, 2**24]),
    seed=st.integers(0, 2**16),
)
def test_blocked_scores_equal_a_brute_force_loop(n_queries, n_documents, block, seed):
    generator = torch.Generator().manual_seed(seed)
    queries = random_reps(generator, n_queries, 3, vocabulary=8)
    documents = random_reps(generator, n_documents, 5, vocabulary=8)
    original = module.SCORE_BLOCK_ELEMENTS
    module.SCORE_BLOCK_ELEMENTS = block  # 1 and 7: one query per group of matches
    try:
        sparse, dense = sparse_embed_scores(queries, documents)
    finally:
        module.SCORE_BLOCK_ELEMENTS = original
    expected_sparse, expected_dense = brute_force(queries, documents)
    assert torch.allclose(sparse, torch.tensor(expected_sparse), atol=1e-5)
    assert torch.allclose(dense, torch.tensor(expected_dense), atol=1e-5)


def tiny_sparse_embed(model_dir, query_terms: int, doc_terms: int) -> SparseEmbedEncoder:
    torch.manual_seed(0)
    config = SparseEmbed(
        name_or_path=str(model_dir),
        new_head_bias=0.0,
        embedding_dim=8,
        query_terms=query_terms,
        doc_terms=doc_terms,
    )
    return config.build()


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> SparseEmbedEncoder:
    return tiny_sparse_embed(tiny_model_dir, query_terms=6, doc_terms=10)


def test_representations_keep_k_terms_with_their_embeddings(model):
    with torch.no_grad():
        reps = model.forward_documents(["honey bees pollinate flowering plants"])
    ids, weights, embeddings = unpack(reps)
    assert reps.shape == (1, 10, 2 + 8)
    assert len(set(ids[0].tolist())) == 10 and (weights[0, :-1] >= weights[0, 1:]).all()
    assert (embeddings >= 0).all()  # projected through a ReLU
    terms = model.term_weights(reps)
    assert terms.shape == (1, len(model.tokenizer)) and (terms != 0).sum() == (weights != 0).sum()
    assert [
        token for token, _ in model.decode(reps, top_k=3)[0]
    ] == model.tokenizer.convert_ids_to_tokens(ids[0, :3].tolist())


def test_padding_does_not_change_a_text_s_representation(model):
    short = "lava flows"
    with torch.no_grad():
        alone = model.forward_queries([short])
        padded = model.forward_queries([short, "honey bees pollinate flowering plants in spring"])[
            :1
        ]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_save_and_load_round_trip_keeps_the_projection(model, tmp_path):
    model.save(tmp_path / "sparse-embed")
    loaded = load(tmp_path / "sparse-embed")
    assert loaded.config.embedding_dim == 8 and loaded.config.doc_terms == 10
    with torch.no_grad():
        assert torch.allclose(loaded.forward_queries(["bees"]), model.forward_queries(["bees"]))


def test_score_parts_sum_to_the_score_and_feed_named_loss_terms(model):
    with torch.no_grad():
        queries = model.forward_queries(TRIPLES[0])
        documents = model.forward_documents(TRIPLES[1])
    parts = model.score_parts(queries, documents)
    assert torch.allclose(parts["sparse"] + parts["dense"], model.score(queries, documents))
    rows = torch.arange(2)
    batch = BatchScores(model.score(queries, documents), rows, rows, parts=parts)
    assert torch.equal(batch.on("dense").scores, parts["dense"])
    with pytest.raises(ValueError, match="no part 'lexical'"):
        batch.on("lexical")


def test_train_sparse_embed_returns_the_three_losses_and_updates_every_part(tiny_model_dir):
    torch.manual_seed(0)
    config = SparseEmbed(
        name_or_path=str(tiny_model_dir),
        new_head_bias=0.0,
        embedding_dim=8,
        query_terms=20,
        doc_terms=40,
    )
    model = config.build().train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = train_sparse_embed(model, optimizer, *TRIPLES, threshold_flops=0.0)
    assert set(losses) == {"dense", "sparse", "flops"}
    assert all(torch.isfinite(value) and value > 0 for value in losses.values())
    assert not torch.equal(before["projection.weight"], model.projection.weight)
    embeddings = "query_encoder.bert.embeddings.word_embeddings.weight"
    assert not torch.equal(before[embeddings], model.state_dict()[embeddings])


def test_train_sparse_embed_needs_one_text_per_triple(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="one text per triple, got 2, 2 and 1"):
        train_sparse_embed(model, optimizer, TRIPLES[0], TRIPLES[1], TRIPLES[2][:1])
