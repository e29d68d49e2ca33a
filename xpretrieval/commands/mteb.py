"""`python -m xpretrieval mteb MODEL --tasks SciFact [NFCorpus ...]`: evaluate a model (what
`xpretrieval.load` reads: a saved folder or a hub id) on MTEB tasks or a benchmark with the
`mteb` package, through the adapter of evaluation/mteb.py. mteb downloads the tasks and writes
its result files under --results; the main score of each task is printed."""

from __future__ import annotations

import argparse
from pathlib import Path

from xpretrieval.core.errors import UserInputError


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m xpretrieval mteb", description=__doc__)
    parser.add_argument("model", help="a saved model folder or a Hugging Face hub id")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--tasks", nargs="+", help="mteb task names, e.g. SciFact NFCorpus")
    which.add_argument("--benchmark", help="an mteb benchmark name, e.g. NanoBEIR")
    parser.add_argument("--results", type=Path, default=Path("outputs/mteb"), help="mteb's results")
    parser.add_argument("--batch-size", type=int, default=32, help="texts encoded at once (32)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1... (default: the best available)")
    parser.add_argument("--name", help="the model's name in the results, organization/model")
    parser.add_argument(
        "--prompt",
        action="append",
        default=[],
        metavar="KEY=TEXT",
        help="a prompt by mteb's keys (query, document, a task name or type, SciFact-query...)",
    )
    parser.add_argument(
        "--instruction-template",
        help="read the task's instruction as the query prompt, e.g. 'Instruct: {instruction}\\n'",
    )
    parser.add_argument("--overwrite", action="store_true", help="re-run tasks already in results")
    options = parser.parse_args(args)
    # mteb takes seconds to import: only this command pays for it, not the others' start
    try:
        import mteb

        from xpretrieval.evaluation.mteb import mteb_model
    except ImportError as error:  # an optional dependency: one line naming the install
        raise UserInputError(f"mteb: {error}; pip install 'xpretrieval[mteb]'") from None

    try:
        tasks = list(
            mteb.get_benchmark(options.benchmark).tasks
            if options.benchmark
            else mteb.get_tasks(tasks=options.tasks)
        )
    except KeyError as error:  # mteb's message lists the names it knows that come close
        raise UserInputError(f"mteb: {error.args[0] if error.args else error}") from None
    model = mteb_model(
        options.model,
        name=options.name,
        prompts=_prompts(options.prompt) or None,
        instruction_template=options.instruction_template,
        device=options.device,
    )
    results = mteb.evaluate(
        model,
        tasks,
        cache=mteb.ResultCache(options.results),
        encode_kwargs={"batch_size": options.batch_size},
        overwrite_strategy="always" if options.overwrite else "only-missing",
    )
    main_scores = {task.metadata.name: task.metadata.main_score for task in tasks}
    for task_result in results.task_results:
        name = task_result.task_name
        print(f"{name}: {main_scores[name]}={task_result.get_score():.4f}")
    print(f"Results: {options.results}")


def _prompts(pairs: list[str]) -> dict[str, str]:
    """`KEY=TEXT` arguments as a dictionary (the text may hold `=` and spaces)."""
    prompts = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key:
            raise UserInputError(f"--prompt {pair!r}: expected KEY=TEXT, e.g. query='query: '")
        prompts[key] = text
    return prompts
