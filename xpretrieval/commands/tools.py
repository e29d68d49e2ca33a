"""The command line's tools (commands that take arguments, not a Hydra config) and the usage
text; each tool's module is imported only when it runs, so the others cost nothing."""

from __future__ import annotations

import importlib

TOOLS = {
    name: f"xpretrieval.commands.{module}"
    for name, module in [
        ("report", "report"),
        ("baseline", "baselines"),
        ("push", "push"),
        ("fuse", "fuse"),
        ("merge", "merge"),
        ("mteb", "mteb"),
    ]
}

USAGE = """usage: python -m xpretrieval {train,evaluate,mine,export} [OVERRIDES...]
       python -m xpretrieval report FOLDER [--metric nDCG@10] [--baseline RUN]
       python -m xpretrieval baseline [--fast] experiments/NAME...
       python -m xpretrieval push RUN_OR_CHECKPOINT OWNER/NAME [--private] [--card-only]
       python -m xpretrieval fuse RUN RUN... [--method rrf|wsum|...] [--weights W...]
       python -m xpretrieval merge CKPT CKPT... [--weights W...] [--output DIR]
       python -m xpretrieval mteb MODEL (--tasks TASK... | --benchmark NAME) [--results DIR]

  train      train the configured model on dataset.train, then evaluate it on dataset.test
  evaluate   evaluate the configured model (model.name_or_path) on dataset.test
  mine       rank the training queries with the model: a run of hard negatives
  export     encode dataset.test for other engines: Anserini files (SPLADE), .npy (dense)
  report     gather the runs under FOLDER (e.g. a multirun) into one table and plots
  baseline   re-run recorded baselines and compare with their recorded metrics
  push       upload a trained model to the Hugging Face Hub with a generated model card
  fuse       fuse runs of one collection (reciprocal rank fusion, weighted sums) and measure it
  merge      average the weights of checkpoints of one architecture (a model soup) into one
  mteb       evaluate a model on MTEB tasks with the mteb package (results in outputs/mteb)

OVERRIDES are Hydra's: +experiment=dense  dataset=scifact  trainer.max_steps=200
Add --help after the command for the config groups, --cfg job for the composed config."""


def run_tool(name: str, args: list[str]) -> None:
    """Run the tool `name` on its command-line arguments."""
    importlib.import_module(TOOLS[name]).main(args)
