"""InfoNCE against values computed by hand on 2x3 score matrices.

Two queries, three documents: column 0 is query 0's positive, column 1 query 1's positive,
column 2 query 0's negative (owners = [0, 1, 0]). The scores come from query vectors
q = [[1, 0], [0, 2]] and document vectors d = [[3, 0], [0, 1], [1, 1]], by dot product and
by cosine. With scale s = 2 and CE(z, t) = -log(exp(z_t) / sum_j exp(z_j)):
  in-batch:   mean(CE(s*S[0], 0), CE(s*S[1], 1))
  own only:   mean(CE(s*S[0, [0, 2]], 0), CE(s*S[1, [1]], 0))
  symmetric:  (in-batch + mean(CE(s*S[:, 0], 0), CE(s*S[:, 1], 1))) / 2
"""

from __future__ import annotations

import math

import pytest
import torch

from xpretrieval.losses import (
    BatchScores,
    BinaryCrossEntropy,
    Hinge,
    InfoNCE,
    Logistic,
    Matryoshka,
    MeanSquaredError,
    PairCrossEntropy,
    Triplet,
)

DOT = [[3.0, 0.0, 1.0], [0.0, 2.0, 2.0]]
COSINE = [[1.0, 0.0, 1 / math.sqrt(2)], [0.0, 1.0, 1 / math.sqrt(2)]]


def ce(logits: list[float], target: int) -> float:
    """CE(z, t) = -log(exp(z_t) / sum_j exp(z_j)), in plain Python."""
    return math.log(sum(math.exp(z) for z in logits)) - logits[target]


def by_hand(scores: list[list[float]], in_batch: bool, symmetric: bool, s: float = 2.0) -> float:
    """The module docstring's formulas, term by term (for DOT: in-batch is
    mean(log(e^6 + 1 + e^2) - 6, log(1 + 2 e^4) - 4) = 0.36142...)."""
    z = [[s * value for value in row] for row in scores]
    if not in_batch:
        return (ce([z[0][0], z[0][2]], 0) + ce([z[1][1]], 0)) / 2
    loss = (ce(z[0], 0) + ce(z[1], 1)) / 2
    if symmetric:
        columns = [[z[0][j], z[1][j]] for j in (0, 1)]
        loss = (loss + (ce(columns[0], 0) + ce(columns[1], 1)) / 2) / 2
    return loss


EXPECTED = {  # (similarity, in_batch_negatives, symmetric) -> loss, computed by hand
    (name, in_batch, symmetric): by_hand(scores, in_batch, symmetric)
    for name, scores in (("dot", DOT), ("cosine", COSINE))
    for in_batch, symmetric in ((True, False), (False, False), (True, True))
}


def batch(scores: list[list[float]]) -> BatchScores:
    return BatchScores(
        scores=torch.tensor(scores, dtype=torch.float64),
        targets=torch.tensor([0, 1]),
        owners=torch.tensor([0, 1, 0]),
    )


def test_the_hand_computation_gives_the_figure_of_its_docstring():
    first, second = math.log(math.exp(6) + 1 + math.exp(2)) - 6, math.log(1 + 2 * math.exp(4)) - 4
    assert EXPECTED[("dot", True, False)] == pytest.approx((first + second) / 2, rel=1e-15)
    assert EXPECTED[("dot", True, False)] == pytest.approx(0.3614222302, abs=1e-10)


@pytest.mark.parametrize(("similarity", "in_batch", "symmetric"), list(EXPECTED))
def test_infonce_matches_hand_computation(similarity, in_batch, symmetric):
    scores = DOT if similarity == "dot" else COSINE
    loss = InfoNCE(scale=2.0, in_batch_negatives=in_batch, symmetric=symmetric)
    value = loss(batch(scores)).item()
    assert value == pytest.approx(EXPECTED[(similarity, in_batch, symmetric)], rel=1e-12)


def test_cosine_scores_come_from_normalised_vectors():
    """The hand-written COSINE matrix is what normalised vectors give under a dot product."""
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), dim=-1)
    d = torch.nn.functional.normalize(torch.tensor([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=-1)
    assert torch.allclose(q @ d.T, torch.tensor(COSINE))


def test_infonce_gradient_raises_positive_and_lowers_negatives():
    scores = torch.tensor(DOT, requires_grad=True)
    InfoNCE(scale=2.0)(
        BatchScores(scores, torch.tensor([0, 1]), torch.tensor([0, 1, 0]))
    ).backward()
    assert scores.grad[0, 0] < 0 and scores.grad[1, 1] < 0  # descent raises the positives
    assert scores.grad[0, 2] > 0 and scores.grad[1, 0] > 0  # and lowers the negatives


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": -1.0}, "scale must be > 0, got -1.0"),
        ({"weight": -0.5}, "weight must be >= 0"),
        (
            {"symmetric": True, "in_batch_negatives": False},
            "symmetric=true needs in_batch_negatives",
        ),
    ],
)
def test_infonce_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InfoNCE(**kwargs)


def test_batch_scores_checks_shapes():
    with pytest.raises(ValueError, match="need targets of shape"):
        BatchScores(torch.zeros(2, 3), torch.tensor([0, 1, 2]), torch.tensor([0, 1, 0]))


# Pairwise losses on DOT: query 0's positive scores 3 and its own negative (column 2) 1;
# query 1 brought no negative, so the only pair is (3, 1).
def test_hinge_matches_hand_computation():
    assert Hinge(margin=1.0)(batch(DOT)).item() == 0.0  # 1 - 3 + 1 < 0
    assert Hinge(margin=3.0)(batch(DOT)).item() == pytest.approx(1.0)  # 3 - 3 + 1


def test_logistic_matches_hand_computation():
    assert Logistic()(batch(DOT)).item() == pytest.approx(math.log(1 + math.exp(1 - 3)))


def test_pair_cross_entropy_matches_hand_computation():
    # positives 3 (query 0) and 2 (query 1) are relevant, the negative 1 is not
    def sigmoid(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    terms = [-math.log(sigmoid(3)), -math.log(sigmoid(2)), -math.log(1 - sigmoid(1))]
    assert PairCrossEntropy()(batch(DOT)).item() == pytest.approx(sum(terms) / 3)


def test_triplet_matches_hand_computation():
    # one pair: query 0 [1, 0] with its positive [3, 4] (column 0) and negative [0, 1] (column 2)
    queries = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    documents = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    vectors = BatchScores(
        queries @ documents.T,
        torch.tensor([0, 1]),
        torch.tensor([0, 1, 0]),
        queries=queries,
        documents=documents,
    )
    euclidean = math.sqrt(2**2 + 4**2) - math.sqrt(1 + 1) + 0.5
    assert Triplet(margin=0.5)(vectors).item() == pytest.approx(euclidean)
    # cosines 3/5 and 0: distances 0.4 and 1
    assert Triplet(margin=0.7, distance="cosine")(vectors).item() == pytest.approx(0.1)
    assert Triplet(margin=0.5, distance="cosine")(vectors).item() == 0.0
    with pytest.raises(ValueError, match="dense"):
        Triplet()(batch(DOT))


def test_pairwise_losses_need_negatives():
    only_positives = BatchScores(torch.eye(2), torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="needs negatives"):
        Hinge()(only_positives)


def test_label_smoothing_matches_hand_computation_over_own_candidates():
    # own candidates only: query 0 chooses among columns 0 and 2, query 1 has column 1 alone.
    # With logits z and epsilon e: (1 - e) * CE + e * mean over candidates of -log p_j.
    s, e = 2.0, 0.1
    p0 = [math.exp(s * 3) / (math.exp(s * 3) + math.exp(s * 1)), None]
    p0[1] = 1 - p0[0]
    query0 = (1 - e) * -math.log(p0[0]) + e * (-math.log(p0[0]) - math.log(p0[1])) / 2
    query1 = 0.0  # its positive is its only candidate: p = 1
    loss = InfoNCE(scale=s, in_batch_negatives=False, label_smoothing=e)(batch(DOT))
    assert loss.item() == pytest.approx((query0 + query1) / 2, rel=1e-12)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        InfoNCE(label_smoothing=1.0)


def test_hardest_in_batch_keeps_only_the_k_best_scoring_other_documents():
    # DOT row 0: own columns 0 (positive) and 2; the other column is 1 (score 0).
    # Row 1: own column 1; others 0 (score 0) and 2 (score 2): k=1 keeps column 2 only.
    s = 2.0
    row0 = -math.log(math.exp(s * 3) / (math.exp(s * 3) + math.exp(0.0) + math.exp(s * 1)))
    row1 = -math.log(math.exp(s * 2) / (math.exp(s * 2) + math.exp(s * 2)))
    loss = InfoNCE(scale=s, hardest_in_batch=1)(batch(DOT))
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-12)
    with pytest.raises(ValueError, match="hardest_in_batch must be >= 1, with in_batch_negatives"):
        InfoNCE(hardest_in_batch=2, in_batch_negatives=False)


def test_matryoshka_averages_infonce_over_normalised_prefixes():
    queries = torch.tensor([[1.0, 0.0, 2.0], [0.0, 2.0, 1.0]], dtype=torch.float64)
    documents = torch.tensor(
        [[3.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64
    )

    def scored(q, d):
        q, d = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(d, dim=-1)
        return BatchScores(
            q @ d.T,
            torch.tensor([0, 1]),
            torch.tensor([0, 1, 0]),
            queries=queries,
            documents=documents,
        )

    infonce = InfoNCE(scale=2.0)
    full = infonce(scored(queries, documents))
    prefix = infonce(scored(queries[:, :2], documents[:, :2]))
    loss = Matryoshka(scale=2.0, dims=[2, 3, 8])(
        scored(queries, documents)
    )  # 3 and 8: not prefixes
    assert loss.item() == pytest.approx(((full + prefix) / 2).item(), rel=1e-12)


def test_pointwise_losses_match_hand_computation():
    # record i's score is scores[i, i]: 3 (label 1) and 2 (label 0)
    labelled = BatchScores(
        torch.tensor([[3.0, 9.0], [9.0, 2.0]], dtype=torch.float64),
        torch.tensor([0, 1]),
        torch.tensor([0, 1]),
        labels=torch.tensor([1.0, 0.0]),
    )
    bce = (-math.log(1 / (1 + math.exp(-3))) - math.log(1 - 1 / (1 + math.exp(-2)))) / 2
    assert BinaryCrossEntropy()(labelled).item() == pytest.approx(bce)
    assert MeanSquaredError()(labelled).item() == pytest.approx(((3 - 1) ** 2 + 2**2) / 2)
    with pytest.raises(ValueError, match="needs labels"):
        MeanSquaredError()(batch(DOT))
