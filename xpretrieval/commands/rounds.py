"""Hard-negative rounds (ANCE-style training in rounds, as tevatron and RocketQA iterate):
round 1 trains as configured; each later round mines the training queries with the previous
round's model (`mine`), draws its hard negatives from that ranking and trains from that model.
Each round keeps its own run directory (`round-<k>/`, its mined run in `round-<k>/mine/`);
`rounds.json` holds every finished round's test metrics, and `metrics.json` the last round's.
`resume=<rounds run>` continues an interrupted rounds run: finished rounds and mining passes
are kept, the interrupted one continues from its last checkpoint."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from xpretrieval.commands.evaluate import run_mine
from xpretrieval.commands.experiment import ExperimentConfig
from xpretrieval.commands.resume import AUTO, last_checkpoint
from xpretrieval.commands.run_dir import claim_run_dir, record_config
from xpretrieval.commands.train import run_train
from xpretrieval.commands.validate import validate
from xpretrieval.core import distributed
from xpretrieval.core.errors import ConfigError
from xpretrieval.core.io import write_json

logger = logging.getLogger(__name__)


def run_train_rounds(
    experiment: ExperimentConfig, output_dir: Path, overrides: list[str] | None = None
) -> dict[str, float]:
    """`train`, once or in `experiment.rounds` hard-negative rounds; the last round's metrics."""
    if experiment.rounds == 1:
        return run_train(experiment, output_dir, overrides)
    check_rounds(experiment)
    resuming = experiment.resume not in (None, AUTO) or (
        experiment.resume == AUTO and (output_dir / "round-1").is_dir()
    )
    experiment = validate(
        replace(experiment, resume=str(output_dir) if resuming else None), "train"
    )
    claim_run_dir(output_dir, "train", resuming=resuming)
    record_config(output_dir, experiment, overrides)
    table: list[dict[str, float]] = []
    current = replace(experiment, rounds=1, resume=AUTO if resuming else None)
    # what a round's own directory records, so that `resume=<run>/round-<k>` continues it
    changes = ["rounds=1"]
    for k in range(1, experiment.rounds + 1):
        round_dir = output_dir / f"round-{k}"
        finished = round_dir / "metrics.json"
        if resuming and finished.is_file():
            logger.info(
                "Hard-negative round %d of %d: finished in %s", k, experiment.rounds, round_dir
            )
            metrics = json.loads(finished.read_text())["aggregate"]
        else:
            logger.info("Hard-negative round %d of %d in %s", k, experiment.rounds, round_dir)
            # no overrides (an experiment built in Python): no resumable record, as for one run
            recorded = None if overrides is None else [*overrides, *changes]
            metrics = run_train(current, round_dir, recorded)
        table.append({"round": k, **metrics})
        write_json(output_dir / "rounds.json", table)  # complete after every round
        if k < experiment.rounds:
            current, changes = _next_round(current, round_dir)
    # the last round's metrics.json at the top too: its model is the rounds' result
    final = json.loads((output_dir / f"round-{experiment.rounds}" / "metrics.json").read_text())
    write_json(output_dir / "metrics.json", final)
    print(_table(table))
    return metrics


def check_rounds(experiment: ExperimentConfig) -> None:
    """Rounds draw hard negatives from a ranking and mine between trainings: refuse what cannot."""
    if not experiment.sampler.hard_negatives.enabled:
        raise ConfigError(
            f"rounds={experiment.rounds}: later rounds draw hard negatives from the previous "
            "model's ranking; set sampler.hard_negatives.top_k (e.g. 50)"
        )
    if distributed.world().parallel:
        raise ConfigError(
            f"rounds={experiment.rounds}: hard-negative rounds mine between trainings, in one "
            "process; run them without torchrun (or each round's training under it, by hand)"
        )


def _next_round(
    experiment: ExperimentConfig, round_dir: Path
) -> tuple[ExperimentConfig, list[str]]:
    """The experiment of the next round (the previous round's last checkpoint, drawing hard
    negatives from its ranking of the training queries, mined unless a resumed run already
    did), and the overrides that say so."""
    model_path = str(last_checkpoint(round_dir))
    trained = replace(experiment, model=replace(experiment.model, name_or_path=model_path))
    mine_dir = round_dir / "mine"
    if not (mine_dir / "metrics.json").is_file():
        started = (mine_dir / "config.yaml").is_file()  # an interrupted mining pass
        run_mine(replace(trained, resume=str(mine_dir) if started else None), mine_dir)
    run_file = str(mine_dir / "run.trec")
    sampler = experiment.sampler
    negatives = replace(sampler.hard_negatives, run_file=run_file, scoreddocs=None)
    changes = [
        "rounds=1",
        f"model.name_or_path={model_path}",
        f"sampler.hard_negatives.run_file={run_file}",
        "sampler.hard_negatives.scoreddocs=null",
    ]
    return replace(trained, sampler=replace(sampler, hard_negatives=negatives)), changes


def _table(table: list[dict[str, float]]) -> str:
    names = [name for name in table[0] if name != "round"]
    lines = ["round  " + "  ".join(f"{name:>10}" for name in names)]
    for row in table:
        cells = "  ".join(f"{row[name]:>10.4f}" for name in names)
        lines.append(f"{int(row['round']):>5}  {cells}")
    return "\n".join(lines)
