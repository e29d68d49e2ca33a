"""What hooks are and what they see: the moments of training a hook can act at, and the small
read-only `TrainState` it receives. Below every component, so that losses, validation and
trackers can all provide hooks without importing the training loop."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass(frozen=True)
class TrainState:
    """The learner's progress after a step (step 0: before the first one)."""

    step: int
    max_steps: int
    epoch: float  # passes over the training data so far
    # weighted terms and their "total", and statistics such as flops/doc_active_dims: 0-d
    # tensors, maybe on a GPU; `float()` waits for the device, so read them when `logged`
    losses: dict[str, Tensor] = field(default_factory=dict)
    statistics: dict[str, Tensor] = field(default_factory=dict)
    learning_rate: float = 0.0
    samples_per_second: float = 0.0
    elapsed_seconds: float = 0.0
    logged: bool = False  # a logging step (every trainer.log_every, and the last one)

    @property
    def finished(self) -> bool:
        return self.step >= self.max_steps


class Hook:
    """Base hook: override the moments you need; each receives the current `TrainState`."""

    @property
    def key(self) -> str:
        """The name checkpoints keep this hook's state under; the hooks of one run need
        distinct keys (a hook made once per loss term adds the term's name)."""
        return type(self).__name__

    def on_train_start(self, state: TrainState) -> None:
        """Before the first step (state.step == 0)."""

    def on_step_end(self, state: TrainState) -> None:
        """After each optimiser step."""

    def on_validation(self, state: TrainState, metrics: dict[str, float]) -> None:
        """After the model was measured on the validation queries at the step of `state`."""

    def should_stop(self) -> bool:
        """Asked after each step: True ends training early (e.g. no progress in validation)."""
        return False

    def on_train_end(self, state: TrainState) -> None:
        """After the last step, also when training stops early."""

    def on_interrupt(self, state: TrainState) -> None:
        """When a signal (SIGINT, SIGTERM) stops training after the step of `state`."""

    def state_dict(self) -> dict:
        """What the hook learned so far (checkpointed, so that a resumed run continues it)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned (a stateless hook has nothing to restore)."""
        del state
