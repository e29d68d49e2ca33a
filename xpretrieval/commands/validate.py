"""The one check of an experiment before a command runs it, shared by the command line and the
Python API: its components fit together, and a resumed run changes only what a resume may."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from omegaconf import OmegaConf

from xpretrieval.commands.compatibility import check_components, searches_collection
from xpretrieval.commands.experiment import ExperimentConfig
from xpretrieval.commands.passage_checks import check_passages
from xpretrieval.commands.resume import AUTO, check_resume_changes, has_checkpoint
from xpretrieval.commands.suite import check_suite, check_suite_resume
from xpretrieval.core.checks import non_finite_settings
from xpretrieval.core.config import to_objects
from xpretrieval.core.errors import ConfigError


def validate(
    experiment: ExperimentConfig, command: str, output_dir: Path | None = None
) -> ExperimentConfig:
    """`experiment` checked for `command` (train, evaluate, mine, export) before any model
    loads: no setting is nan or infinite, the components fit, a resume changes only what it
    may. For `train`, `resume=auto` is resolved: `output_dir` if it holds a checkpoint (a
    relaunched sweep or requeued job), else a fresh start."""
    if command == "train" and experiment.resume == AUTO and output_dir is not None:
        resume = str(output_dir) if has_checkpoint(output_dir) else None
        experiment = replace(experiment, resume=resume)
    # rebuilt from its own fields, so that every component's checks run again: a setting
    # changed on a built experiment (`experiment.trainer.max_steps = 0`) is refused as on the CLI
    experiment = to_objects(OmegaConf.structured(experiment))
    # the settings left to the checkpoint, as it was saved: checked and recorded as used
    experiment = replace(experiment, model=experiment.model.as_saved())
    for key, value in non_finite_settings(experiment):
        raise ConfigError(f"{key} must be a finite number, got {value}")
    check_components(experiment, command)
    check_passages(experiment, command)
    if command != "export" and searches_collection(experiment):
        # the settings the index leaves to the model (a quantised index's precision): recorded
        experiment = replace(experiment, index=experiment.index.fitted(experiment.model))
    check_suite(experiment, command)
    if command == "train" and experiment.resume not in (None, AUTO):
        check_resume_changes(experiment, Path(experiment.resume))
    if command == "evaluate" and experiment.resume not in (None, AUTO):
        check_suite_resume(experiment, Path(experiment.resume))
    return experiment
