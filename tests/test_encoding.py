"""Encoding many texts: each text tokenised once, a window at a time; batches by length under a
batch size and a token budget; the same representations whatever the batching."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import TINY_BEIR
from xpretrieval.data.collection import Collection
from xpretrieval.evaluation.measures import EvaluationConfig
from xpretrieval.models import Dense, Splade
from xpretrieval.models import encoding as encoding_module
from xpretrieval.models.encoding import Batching, TextEncoder, encode_texts

CPU = torch.device("cpu")


@given(
    lengths=st.lists(st.integers(0, 300), max_size=40).map(lambda x: sorted(x, reverse=True)),
    batch_size=st.integers(1, 16),
    max_tokens=st.none() | st.integers(1, 2000),
)
def test_batches_are_the_largest_within_both_limits(lengths, batch_size, max_tokens):
    batching = Batching(batch_size, max_tokens)
    batches = list(batching.cut(lengths))
    assert [i for batch in batches for i in range(len(lengths))[batch]] == list(range(len(lengths)))
    for batch in batches:
        texts = lengths[batch]
        assert 1 <= len(texts) <= batch_size
        if max_tokens is not None and len(texts) > 1:
            assert len(texts) * texts[0] <= max_tokens  # padded to the first, the longest
        if batch.stop < len(lengths):  # one more text would break a limit
            more = lengths[batch.start : batch.stop + 1]
            too_many = len(more) > batch_size
            assert too_many or max_tokens is not None and len(more) * more[0] > max_tokens


def test_each_text_is_tokenised_once_and_forward_reads_the_tokens(monkeypatch):
    monkeypatch.setattr(encoding_module, "TOKENIZE_WINDOW", 4)
    texts = [f"text {'x' * (i * 7 % 11)}" for i in range(10)]
    tokenised, shapes = [], []

    def tokenize(batch):
        tokenised.extend(batch)
        return [[len(text)] * len(text) for text in batch]  # a "token" per character

    def forward(tokens):
        shapes.append((len(tokens), max(map(len, tokens))))
        return torch.tensor([[float(sequence[0])] for sequence in tokens])

    reps = encode_texts(TextEncoder(tokenize, forward), texts, Batching(3, 20), CPU)
    assert sorted(tokenised) == sorted(texts)  # each once
    assert reps.squeeze(1).tolist() == [float(len(t)) for t in texts]  # in the given order
    assert all(n == 1 or n * longest <= 20 for n, longest in shapes)


@pytest.mark.parametrize("config", [Dense, Splade])
def test_token_budgets_change_the_batches_not_the_representations(tiny_model_dir, config):
    model = config(name_or_path=str(tiny_model_dir), doc_max_length=32).build()
    texts = list(Collection.from_beir(TINY_BEIR, "test").documents.values())
    plain = model.encode_documents(texts, batch_size=1)
    budgeted = model.encode_documents(texts, batch_size=16, max_batch_tokens=64)
    torch.testing.assert_close(budgeted, plain, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        assert torch.allclose(model.forward_documents(texts[:1]), plain[:1], atol=1e-5)


def test_a_budget_below_one_token_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="max_batch_tokens must be >= 1 or null, got 0"):
        EvaluationConfig(max_batch_tokens=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        Batching(0)
    assert EvaluationConfig(batch_size=8, max_batch_tokens=512).batching == Batching(8, 512)
