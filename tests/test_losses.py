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

from xpretrieval.losses import BatchScores, InfoNCE

DOT = [[3.0, 0.0, 1.0], [0.0, 2.0, 2.0]]
COSINE = [[1.0, 0.0, 1 / math.sqrt(2)], [0.0, 1.0, 1 / math.sqrt(2)]]

EXPECTED = {  # (similarity, in_batch_negatives, symmetric) -> loss, computed by hand
    ("dot", True, False): 0.3614222301932123,
    ("dot", False, False): 0.009074963958904865,
    ("dot", True, True): 0.1858675183604912,
    ("cosine", True, False): 0.5259131455039492,
    ("cosine", False, False): 0.22127378926926014,
    ("cosine", True, True): 0.3264205782734608,
}


def batch(scores: list[list[float]]) -> BatchScores:
    return BatchScores(
        scores=torch.tensor(scores, dtype=torch.float64),
        targets=torch.tensor([0, 1]),
        owners=torch.tensor([0, 1, 0]),
    )


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
