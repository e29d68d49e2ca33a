"""Training losses: pure functions of scores (and representations, for regularisers)."""

from xpretrieval.losses.base import BatchScores, Loss
from xpretrieval.losses.infonce import InfoNCE

__all__ = ["BatchScores", "InfoNCE", "Loss"]
