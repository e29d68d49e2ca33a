"""What hooks see of training: a small, read-only summary of the current step."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrainState:
    """The learner's progress after a step (step 0: before the first one)."""

    step: int
    max_steps: int
    epoch: float  # passes over the training data so far
    losses: dict[str, float] = field(default_factory=dict)  # weighted terms and their "total"
    statistics: dict[str, float] = field(default_factory=dict)  # e.g. flops/doc_active_dims
    learning_rate: float = 0.0
    samples_per_second: float = 0.0
    elapsed_seconds: float = 0.0

    @property
    def finished(self) -> bool:
        return self.step >= self.max_steps
