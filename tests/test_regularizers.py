"""FLOPS and L1 against hand computations, the threshold, and the warm-up schedules."""

from __future__ import annotations

import pytest
import torch

from xpretrieval.losses import L1, BatchScores, Flops, Warmup
from xpretrieval.losses.regularizers import flops

QUERIES = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])  # mean |w| per term: [2, 0, 1]
DOCUMENTS = torch.tensor([[0.0, 4.0, 0.0]])  # FLOPS 16, L1 4


def scored(queries: torch.Tensor = QUERIES, documents: torch.Tensor = DOCUMENTS) -> BatchScores:
    return BatchScores(
        scores=queries @ documents.T,
        targets=torch.zeros(len(queries), dtype=torch.long),
        owners=torch.zeros(len(documents), dtype=torch.long),
        query_terms=queries,
        doc_terms=documents,
    )


def test_flops_matches_hand_computation():
    assert flops(QUERIES).item() == pytest.approx(2.0**2 + 0.0**2 + 1.0**2)


def test_flops_term_weighs_queries_and_documents_separately():
    term = Flops(query_weight=0.5, doc_weight=2.0)
    assert term(scored()).item() == pytest.approx(0.5 * 5.0 + 2.0 * 16.0)


def test_l1_term_matches_hand_computation():
    term = L1(query_weight=1.0, doc_weight=0.25)
    assert term(scored()).item() == pytest.approx((3.0 + 3.0) / 2 + 0.25 * 4.0)


def test_threshold_penalises_only_the_excess_and_keeps_a_gradient():
    queries = QUERIES.clone().requires_grad_(True)
    Flops(query_weight=1.0, doc_weight=0.0, threshold=3.0)(scored(queries)).backward()
    assert queries.grad.abs().sum() > 0  # FLOPS 5 is 2 above the threshold: still pushed down
    below = Flops(query_weight=1.0, doc_weight=0.0, threshold=10.0)
    queries = QUERIES.clone().requires_grad_(True)
    value = below(scored(queries))
    value.backward()
    assert value.item() == 0.0 and queries.grad.abs().sum() == 0  # below target: no penalty


def test_far_above_threshold_the_gradient_does_not_vanish():
    """neural-cherche clips |threshold - flops| to [0, 1], so far from it the gradient is 0."""
    queries = (QUERIES * 10).requires_grad_(True)  # FLOPS 500, far above a threshold of 1
    Flops(query_weight=1.0, doc_weight=0.0, threshold=1.0)(scored(queries)).backward()
    assert queries.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("warmup", "step", "expected"),
    [
        (Warmup.quadratic, 0, 0.0),
        (Warmup.quadratic, 5, 0.25 * 0.25),  # weight * (5 / 10)^2 with weight 0.25
        (Warmup.quadratic, 10, 0.25),
        (Warmup.quadratic, 99, 0.25),
        (Warmup.linear, 5, 0.25 * 0.5),
        (Warmup.linear, 10, 0.25),
    ],
)
def test_warmup_schedule_values(warmup, step, expected):
    term = Flops(weight=0.25, warmup_steps=10, warmup=warmup)
    assert term.weight_at(step) == pytest.approx(expected)


def test_no_warmup_means_a_constant_weight():
    assert Flops(weight=0.5, warmup_steps=0).weight_at(0) == 0.5


def test_regulariser_needs_term_weights():
    batch = BatchScores(
        torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)
    )
    with pytest.raises(ValueError, match="needs vocabulary term weights"):
        Flops()(batch)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"doc_weight": -1.0}, "doc_weight must be >= 0"),
        ({"warmup_steps": -3}, "warmup_steps must be >= 0"),
        ({"threshold": -0.1}, "threshold must be >= 0"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Flops(**kwargs)


def test_statistics_match_hand_computation():
    documents = torch.tensor([[5.0, 0.0, 1.0], [0.0, 4.0, 0.0]])  # active fractions [.5, .5, .5]
    stats = Flops().statistics(scored(QUERIES, documents))
    assert stats == pytest.approx(
        {
            "query_penalty": 5.0,
            "doc_penalty": 2.5**2 + 2.0**2 + 0.5**2,
            "query_active_dims": 1.5,
            "doc_active_dims": 1.5,
            "query_sparsity_ratio": 0.5,  # 1.5 of 3 dimensions active
            "doc_sparsity_ratio": 0.5,
            "expected_flops": 1.0 * 0.5 + 0.0 * 0.5 + 0.5 * 0.5,  # active fractions [1, 0, .5]
            "scale": 1.0,
        }
    )


def test_target_sparsity_scales_the_weight_towards_the_target():
    term = Flops(weight=0.5, warmup_steps=0, target_doc_active_dims=10.0, adapt_rate=0.1)
    term.adapt(doc_active_dims=20.0)  # twice too dense: scale *= (20 / 10) ** 0.1
    assert term.scale == pytest.approx(2**0.1)
    assert term.weight_at(1) == pytest.approx(0.5 * 2**0.1)
    term.adapt(doc_active_dims=5.0)  # twice too sparse: scale *= (5 / 10) ** 0.1, back to 1
    assert term.scale == pytest.approx(1.0)
    for _ in range(10_000):
        term.adapt(doc_active_dims=1e6)
    assert term.scale == 1e3  # bounded


def test_only_a_targeted_regulariser_contributes_a_hook():
    assert Flops().hooks("flops") == []
    (hook,) = Flops(target_doc_active_dims=5.0).hooks("flops")
    assert hook.statistic == "flops/doc_active_dims"


def test_quadratic_warmup_is_neural_cherches_flops_scheduler_one_step_later():
    """FlopsScheduler(weight, steps): each get() first advances its step (from 1), then
    returns weight * (step / steps)^2, and stays at weight once step reaches steps."""
    weight, steps = 3e-4, 7
    scheduler_step, values = 1, []
    for _ in range(12):  # its get(), written out
        if scheduler_step < steps:
            scheduler_step += 1
        values.append(weight * (scheduler_step / steps) ** 2)
    term = Flops(weight=weight, warmup_steps=steps, warmup=Warmup.quadratic)
    assert values == pytest.approx([term.weight_at(n + 1) for n in range(1, 13)])
