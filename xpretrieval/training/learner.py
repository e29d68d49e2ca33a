"""The Learner: one readable loop from sampled batches to optimiser steps, with hooks around it."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from itertools import islice
from pathlib import Path

import torch
from torch import nn

from xpretrieval.batchers import Batcher
from xpretrieval.data.collection import Collection
from xpretrieval.device import Precision, autocast
from xpretrieval.errors import ResourceError
from xpretrieval.hooks import Hook, TrainState
from xpretrieval.losses.base import Loss
from xpretrieval.models.base import PairScorer, TrainableModel
from xpretrieval.samplers.base import Sampler
from xpretrieval.training.grad_cache import CachedReps, backward_cached, encode_cached
from xpretrieval.training.interrupt import StopSignals, TrainingInterrupted
from xpretrieval.training.optim import OptimizerConfig
from xpretrieval.training.random_state import (
    capture_random_state,
    restore_random_state,
    seed_everything,
)
from xpretrieval.training.trainers import StepOutput, Trainer
from xpretrieval.training.validation import Validator

logger = logging.getLogger(__name__)

TRAINING_STATE_FILE = "training_state.pt"


class Learner:
    """Trains `model` on records that `sampler` draws from `collection`.

    Each step: a batch from the batcher, the trainer's named loss terms, their sum
    back-propagated, gradients clipped, optimiser and schedule stepped, hooks called.
    """

    def __init__(
        self,
        model: TrainableModel,
        collection: Collection,
        sampler: Sampler,
        batcher: Batcher,
        trainer: Trainer,
        losses: dict[str, Loss],
        optimizer: OptimizerConfig,
        seed: int,
        precision: Precision = Precision.auto,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"the model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.collection = collection
        self.sampler = sampler
        self.trainer = trainer
        if not losses:
            raise ValueError("losses is empty: training needs at least one loss term")
        self.losses = losses
        self.seed = seed
        self.precision = precision
        self.epoch_size = sampler.epoch_size(collection)
        if batcher.batch_size > self.epoch_size:  # repeats would be their own negatives
            logger.warning(
                "batcher.batch_size=%d is more than the %d distinct training records of %s; "
                "using batches of %d",
                batcher.batch_size,
                self.epoch_size,
                collection.name,
                self.epoch_size,
            )
            batcher = replace(batcher, batch_size=self.epoch_size)
        self.batcher = batcher
        self.max_steps = trainer.total_steps(self.epoch_size, batcher.batch_size)
        self.optimizer, self.schedule = optimizer.build(model, self.max_steps)
        self.step = 0
        self._resumed_random_state: dict | None = None
        self._resumed_hook_states: dict[str, dict] = {}
        self._hooks: list[Hook] = []  # those of the running fit, whose state checkpoints keep

    def fit(self, hooks: Iterable[Hook] = (), validator: Validator | None = None) -> TrainState:
        """Run all steps (fewer if a hook asks to stop); returns the final state. When given,
        `validator` measures the model when due, and hooks see it in `on_validation`."""
        hooks = self._hooks = list(hooks)
        for hook in hooks:  # resumed: hooks continue from their checkpointed state
            if type(hook).__name__ in self._resumed_hook_states:
                hook.load_state_dict(self._resumed_hook_states[type(hook).__name__])
        seed_everything(self.seed)
        device = next(self.model.parameters()).device
        records = self.sampler.records(self.collection, self.seed)
        if self.step:  # resumed: skip the records of the steps already taken
            records = islice(records, self.step * self.batcher.batch_size, None)
            assert self._resumed_random_state is not None
            restore_random_state(self._resumed_random_state)
        batches = self.batcher.batches(records)
        logger.info(
            "Training for %d steps of %d records (%.2f epochs of %d records) on %s",
            self.max_steps,
            self.batcher.batch_size,
            self.max_steps * self.batcher.batch_size / self.epoch_size,
            self.epoch_size,
            device,
        )
        state = TrainState(step=self.step, max_steps=self.max_steps, epoch=0.0)
        for hook in hooks:
            hook.on_train_start(state)
        self.model.train()
        start, samples = time.perf_counter(), 0
        try:
            with StopSignals() as signals:
                while self.step < self.max_steps:
                    batch = next(batches)
                    losses, statistics = self._optimise(batch, device)
                    self.step += 1
                    samples += len(batch)
                    elapsed = time.perf_counter() - start
                    state = TrainState(
                        step=self.step,
                        max_steps=self.max_steps,
                        epoch=self.step * self.batcher.batch_size / self.epoch_size,
                        losses=losses,
                        statistics=statistics,
                        learning_rate=self.schedule.get_last_lr()[0],
                        samples_per_second=samples / elapsed if elapsed > 0 else 0.0,
                        elapsed_seconds=elapsed,
                    )
                    # validation first, so that a checkpoint of this step includes its result
                    if validator is not None and validator.due(state):
                        metrics = validator.validate(self.model)
                        for hook in hooks:
                            hook.on_validation(state, metrics)
                    for hook in hooks:
                        hook.on_step_end(state)
                    if any([hook.should_stop() for hook in hooks]):
                        break
                    if signals.received is not None:
                        for hook in hooks:
                            hook.on_interrupt(state)
                        raise TrainingInterrupted(signals.received, self.step)
        finally:
            self.model.eval()
        for hook in hooks:
            hook.on_train_end(state)
        return state

    def _optimise(
        self, batch: list, device: torch.device
    ) -> tuple[dict[str, float], dict[str, float]]:
        """One optimiser step on `batch`; returns the weighted loss terms and their total, and
        the step's statistics."""
        self.optimizer.zero_grad(set_to_none=True)
        logged, statistics = self.compute_gradients(batch, device)
        if self.trainer.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.trainer.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        return logged, statistics

    def _out_of_memory(self, device: torch.device) -> ResourceError:
        micro = self.batcher.micro_batch_size()
        return ResourceError(
            f"step {self.step + 1}: out of memory on {device} with batch_size="
            f"{self.batcher.batch_size}"
            + ("" if micro is None else f" encoded {micro} texts at a time")
            + "; use batcher=adaptive or batcher=micro with a smaller batcher.micro (the loss "
            "stays that of the whole batch), or lower model.doc_max_length"
        )

    def compute_gradients(
        self, batch: list, device: torch.device
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Accumulate into `.grad` the gradients of the weighted sum of the batch's loss terms;
        returns the weighted terms and their total, and the step's statistics. Out of
        memory, the step is retried as long as the batcher can split it finer."""
        random_state = capture_random_state()  # a retried step draws what the first try drew
        while True:
            try:
                return self._gradients(batch, device)
            except torch.OutOfMemoryError as error:
                self.optimizer.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                if not self.batcher.after_out_of_memory():
                    raise self._out_of_memory(device) from error
                restore_random_state(random_state)

    def _gradients(
        self, batch: list, device: torch.device
    ) -> tuple[dict[str, float], dict[str, float]]:
        """One try of `compute_gradients`. With a batcher that splits batches, texts are
        encoded by micro-batches and the loss is computed once on the whole batch
        (`grad_cache`): the same value and gradients as in one pass."""
        step = self.step + 1
        with autocast(device, self.precision):
            output, cached = self._forward(batch)
        terms = {name: self.losses[name].weight_at(step) * v for name, v in output.terms.items()}
        total = torch.stack([term.float() for term in terms.values()]).sum()
        logged = {name: term.item() for name, term in terms.items()}
        logged["total"] = total.item()
        bad = [name for name, value in logged.items() if not math.isfinite(value)]
        if bad:
            raise FloatingPointError(
                f"step {step}: the loss term {bad[0]!r} is {logged[bad[0]]}; "
                "lower optimizer.lr or check the data of this batch"
            )
        total.backward()
        with autocast(device, self.precision):
            for encode, reps in cached:  # split batches: gradients through each micro-batch
                backward_cached(encode, reps)
        return logged, output.statistics

    def _forward(self, batch: list) -> tuple[StepOutput, list[tuple[Callable, CachedReps]]]:
        """The batch's loss terms, and the representations cached by micro-batch (if split)."""
        model = self.model
        if isinstance(model, PairScorer):  # reads each (query, document) pair: no reps
            return self.trainer.pair_terms(model, batch, self.losses), []
        query_texts, doc_texts = self.trainer.texts(batch)
        micro = self.batcher.micro_batch_size()
        cached = []
        if micro is None:
            queries = model.forward_queries(query_texts)
            documents = model.forward_documents(doc_texts)
        else:
            encoders = [(model.forward_queries, query_texts), (model.forward_documents, doc_texts)]
            cached = [(encode, encode_cached(encode, texts, micro)) for encode, texts in encoders]
            queries, documents = (reps.reps for _, reps in cached)
        output = self.trainer.loss_terms(model, batch, queries, documents, self.losses)
        return output, cached

    def save_checkpoint(self, path: Path) -> None:
        """Write the model (Hugging Face format) and all that `restore` needs to continue
        exactly: step, optimiser, schedule, loss-term state and random generators."""
        self.model.save(path)
        torch.save(
            {
                "step": self.step,
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "losses": {name: loss.state_dict() for name, loss in self.losses.items()},
                "random": capture_random_state(),
                "hooks": {type(hook).__name__: hook.state_dict() for hook in self._hooks},
            },
            Path(path) / TRAINING_STATE_FILE,
        )

    def restore(self, path: Path) -> None:
        """Continue from a checkpoint that `save_checkpoint` wrote, whose weights the model
        already holds: the next `fit` takes step `step + 1` with the records, learning rate
        and random draws that the uninterrupted run would have used."""
        state = torch.load(Path(path) / TRAINING_STATE_FILE, weights_only=True)
        self.step = state["step"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        for name, loss in self.losses.items():
            loss.load_state_dict(state["losses"].get(name, {}))
        self._resumed_random_state = state["random"]
        self._resumed_hook_states = state.get("hooks", {})
