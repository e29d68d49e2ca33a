"""The Learner: one readable loop from sampled batches to optimiser steps, with hooks around it."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from itertools import islice
from pathlib import Path

import torch
from torch import Tensor, nn

from xpretrieval.core import distributed
from xpretrieval.core.device import Precision, autocast
from xpretrieval.core.errors import NonFiniteError, ResourceError
from xpretrieval.core.hooks import Hook, TrainState
from xpretrieval.data.collection import Collection
from xpretrieval.losses.base import Loss
from xpretrieval.models.base import BiEncoder, PairScorer, TrainableModel
from xpretrieval.samplers.base import Sampler
from xpretrieval.training.batchers import Batcher
from xpretrieval.training.grad_cache import CachedReps, backward_cached, encode_cached
from xpretrieval.training.interrupt import StopSignals, TrainingInterrupted
from xpretrieval.training.optim import OptimizerConfig
from xpretrieval.training.passage_positives import PassagePicker
from xpretrieval.training.random_state import (
    capture_random_state,
    restore_random_state,
    seed_everything,
)
from xpretrieval.training.trainers import Trainer

logger = logging.getLogger(__name__)

TRAINING_STATE_FILE = "training_state.pt"


class Learner:
    """Trains `model` on records that `sampler` draws from `collection`.

    The loop is `fit` and one step is `train_step`: a batch from the batcher, the trainer's
    named loss terms, their weighted sum back-propagated, gradients clipped, optimiser and
    schedule stepped; then every hook's `on_step_end` (validation, logging, checkpoints).
    Loss values stay on the device except on logging steps.
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
        # long documents (dataset.train.passages): the passages each batch trains on
        passages = collection.passages
        self.passages = None if passages is None else PassagePicker(passages, model, precision)
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
        self.device = next(model.parameters()).device
        self.world = distributed.world()
        if batcher.batch_size < self.world.size:
            raise ValueError(
                f"batcher.batch_size={batcher.batch_size} leaves some of the {self.world.size} "
                "processes nothing to train on; use at least one record per process"
            )
        distributed.broadcast_parameters(model)
        # the first step whose total loss was not finite (0: none); read on logging steps only,
        # as reading it waits for the device
        self._first_non_finite = torch.zeros((), dtype=torch.long, device=self.device)
        self._resumed_random_state: dict | None = None
        self._resumed_hook_states: dict[str, dict] = {}
        self._hooks: list[Hook] = []  # those of the running fit, whose state checkpoints keep

    def fit(self, hooks: Iterable[Hook] = ()) -> TrainState:
        """Run all steps (fewer if a hook asks to stop); returns the final state."""
        hooks = self._start_hooks(hooks)
        batches = self._batches()
        state = TrainState(step=self.step, max_steps=self.max_steps, epoch=0.0)
        for hook in hooks:
            hook.on_train_start(state)
        self.model.train()
        start, samples = time.perf_counter(), 0
        try:
            with StopSignals() as signals:
                while self.step < self.max_steps:
                    batch = next(batches)
                    if self.world.parallel:  # each process its own dropout, repeatable by step
                        torch.manual_seed(hash((self.seed, self.step, self.world.rank)))
                    losses, statistics = self.train_step(batch)
                    self.step += 1
                    samples += len(batch)
                    if self._local_loss and self._logging_step():
                        losses = distributed.average(losses)  # each process had its share
                    state = self._state(losses, statistics, samples, start)
                    if state.logged:  # the only wait for the device outside hooks
                        self._check_finite(losses)
                    for hook in hooks:
                        hook.on_step_end(state)
                    stop, interrupted = distributed.any_process(
                        any([hook.should_stop() for hook in hooks]), signals.received is not None
                    )
                    if stop:
                        break
                    if interrupted:
                        for hook in hooks:
                            hook.on_interrupt(state)
                        raise TrainingInterrupted(signals.received or signal.SIGTERM, self.step)
        finally:
            self.model.eval()
        for hook in hooks:
            hook.on_train_end(state)
        return state

    def _start_hooks(self, hooks: Iterable[Hook]) -> list[Hook]:
        """The hooks of this fit, each with its checkpointed state when resumed; their keys
        (what checkpoints store their state under) must differ."""
        hooks = self._hooks = list(hooks)
        keys = [hook.key for hook in hooks]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ValueError(
                f"hooks share the key {repeated[0]!r}: their checkpointed states would overwrite "
                "each other; give each its own `key`"
            )
        for hook in hooks:
            if hook.key in self._resumed_hook_states:
                hook.load_state_dict(self._resumed_hook_states[hook.key])
        return hooks

    def _batches(self) -> Iterator[list]:
        """Batches of records from the seed; resumed, from the step after the checkpoint's,
        with the random state the uninterrupted run had there."""
        seed_everything(self.seed)
        records = self.sampler.records(self.collection, self.seed)
        if self.step:
            records = islice(records, self.step * self.batcher.batch_size, None)
            assert self._resumed_random_state is not None
            restore_random_state(self._resumed_random_state)
        logger.info(
            "Training for %d steps of %d records (%.2f epochs of %d records) on %s",
            self.max_steps,
            self.batcher.batch_size,
            self.max_steps * self.batcher.batch_size / self.epoch_size,
            self.epoch_size,
            self.device,
        )
        batches = self.batcher.batches(records)
        # passages chosen as each step draws its batch: by the weights that step starts from
        return batches if self.passages is None else map(self.passages, batches)

    def _state(
        self, losses: dict[str, Tensor], statistics: dict[str, Tensor], samples: int, start: float
    ) -> TrainState:
        elapsed = time.perf_counter() - start
        return TrainState(
            step=self.step,
            max_steps=self.max_steps,
            epoch=self.step * self.batcher.batch_size / self.epoch_size,
            losses=losses,
            statistics=statistics,
            learning_rate=self.schedule.get_last_lr()[0],
            samples_per_second=samples / elapsed if elapsed > 0 else 0.0,
            elapsed_seconds=elapsed,
            logged=self._logging_step(),
        )

    def _logging_step(self) -> bool:
        return self.step % self.trainer.log_every == 0 or self.step >= self.max_steps

    def _check_finite(self, losses: dict[str, Tensor]) -> None:
        """Fail, naming the first bad step and a bad term, once a step's loss was not finite."""
        first = int(self._first_non_finite)
        if not first:
            return
        bad = next((name for name, value in losses.items() if not torch.isfinite(value)), "total")
        raise NonFiniteError(
            f"step {first}: the loss is not finite (at step {self.step}: {bad}="
            f"{float(losses[bad])}); lower optimizer.lr or check the data of step {first}"
        )

    def train_step(self, batch: list) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """One optimiser step on `batch`: gradients of the weighted sum of its loss terms
        (retried with finer micro-batches when out of memory, if the batcher can split),
        clipped, then the optimiser and schedule step. Returns the weighted terms with their
        "total", and the step's statistics, all detached 0-d tensors (not synchronised)."""
        self.optimizer.zero_grad(set_to_none=True)
        losses, statistics = self.compute_gradients(batch)
        distributed.reduce_gradients(self.model.parameters(), mean=self._local_loss)
        if self.trainer.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.trainer.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        return losses, statistics

    def compute_gradients(self, batch: list) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Accumulate the gradients of a batch's weighted loss into `.grad`; out of memory,
        retried as long as the batcher can split the batch finer."""
        random_state = capture_random_state()  # a retried step draws what the first try drew
        while True:
            try:
                return self._gradients(batch)
            except torch.OutOfMemoryError as error:
                self.optimizer.zero_grad(set_to_none=True)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if not self.batcher.after_out_of_memory():
                    raise self._out_of_memory() from error
                restore_random_state(random_state)

    def _out_of_memory(self) -> ResourceError:
        micro = self.batcher.micro_batch_size()
        return ResourceError(
            f"step {self.step + 1}: out of memory on {self.device} with batch_size="
            f"{self.batcher.batch_size}"
            + ("" if micro is None else f" encoded {micro} texts at a time")
            + "; use batcher=adaptive or batcher=micro with a smaller batcher.micro (the loss "
            "stays that of the whole batch), or lower model.doc_max_length"
        )

    def _gradients(self, batch: list) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Forward, loss terms and backward of one try of a step. With a batcher that splits
        batches, texts are encoded by micro-batches and the loss is computed once on the whole
        batch (`grad_cache`): the same value and gradients as in one pass."""
        model, trainer, micro = self.model, self.trainer, self.batcher.micro_batch_size()
        cached: list[tuple[Callable, CachedReps]] = []
        if self._local_loss:  # this process's share of the records (all of them when alone)
            batch = list(self.world.shard(batch))
        with autocast(self.device, self.precision):
            if isinstance(model, PairScorer):  # reads each (query, document) pair: no reps
                output = trainer.pair_terms(model, batch, self.losses)
            else:
                assert isinstance(model, BiEncoder)
                query_texts, doc_texts = trainer.texts(batch)
                if not self._local_loss:  # encode this process's share of the texts
                    query_texts, doc_texts = (
                        self.world.shard(query_texts),
                        self.world.shard(doc_texts),
                    )
                sides = [(model.forward_queries, query_texts), (model.forward_documents, doc_texts)]
                if micro is None:
                    queries, documents = (forward(texts) for forward, texts in sides)
                else:
                    cached = [
                        (forward, encode_cached(forward, texts, micro)) for forward, texts in sides
                    ]
                    queries, documents = (reps.reps for _, reps in cached)
                if not self._local_loss:  # the global batch's reps, in its layout
                    queries, documents = (
                        distributed.gather_rows(queries),
                        distributed.gather_rows(documents),
                    )
                output = trainer.loss_terms(model, batch, queries, documents, self.losses)
        step = self.step + 1
        losses = {name: self.losses[name].weight_at(step) * v for name, v in output.terms.items()}
        losses["total"] = torch.stack([term.float() for term in losses.values()]).sum()
        losses["total"].backward()
        with autocast(self.device, self.precision):
            for forward, reps in cached:  # split batches: gradients through each micro-batch
                backward_cached(forward, reps)
        first_bad = (self._first_non_finite == 0) & ~torch.isfinite(losses["total"].detach())
        self._first_non_finite = torch.where(first_bad, step, self._first_non_finite)
        return {name: value.detach() for name, value in losses.items()}, output.statistics

    @property
    def _local_loss(self) -> bool:
        """Several processes, each with the loss of its share of the records (pair scorers
        always; bi-encoders without cross-device negatives)."""
        cross_device = self.trainer.cross_device_negatives and not isinstance(
            self.model, PairScorer
        )
        return self.world.parallel and not cross_device

    def save_checkpoint(self, path: Path) -> None:
        """Write the model (Hugging Face format) and all that `restore` needs to continue
        exactly: step, optimiser, schedule, loss-term state, random generators and each hook's
        state by its key. Never weights that are not finite or that a non-finite loss may have
        spoilt."""
        first = int(self._first_non_finite)
        if first:
            raise NonFiniteError(
                f"not saving the checkpoint of step {self.step}: the loss of step {first} was "
                "not finite; lower optimizer.lr, or resume from the previous checkpoint"
            )
        spoilt = next((n for n, p in self.model.named_parameters() if not p.isfinite().all()), None)
        if spoilt is not None:  # an update can overflow after a finite loss
            raise NonFiniteError(
                f"not saving the checkpoint of step {self.step}: weight {spoilt} is not finite "
                "after the update; lower optimizer.lr or optimizer.weight_decay, or resume from "
                "the previous checkpoint"
            )
        self.model.save(path)
        torch.save(
            {
                "step": self.step,
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "losses": {name: loss.state_dict() for name, loss in self.losses.items()},
                "random": capture_random_state(),
                "hooks": {hook.key: hook.state_dict() for hook in self._hooks},
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
