"""Runs (ranked documents per query) and their TREC files: `qid Q0 docid rank score tag`."""

from __future__ import annotations

import math
from pathlib import Path

from xpretrieval.core.errors import DataError, NonFiniteError
from xpretrieval.core.io import atomic_file, numbered_lines

Run = dict[str, list[tuple[str, float]]]
"""query id -> [(document id, score)], best first."""


def write_trec_run(path: str | Path, run: Run, tag: str = "xpretrieval") -> None:
    """Write `run` in TREC format, atomically, each query's documents in trec_eval's order:
    by the written (6-decimal) score, decreasing, and ties by document id, decreasing, so
    that the rank column agrees with what trec_eval and ir-measures compute from the file.
    A score that is nan or infinite is refused: no run (and so no metrics) is built on it."""
    for query_id, ranking in run.items():
        for doc_id, score in ranking:
            if not math.isfinite(score):
                raise NonFiniteError(
                    f"{path}: not written: query {query_id}, document {doc_id} scored {score}; "
                    "the model's weights are not finite (lower optimizer.lr and train again)"
                )
    with atomic_file(path) as handle:
        for query_id, ranking in run.items():
            written = [(doc_id, f"{score:.6f}") for doc_id, score in ranking]
            written.sort(key=lambda item: item[0], reverse=True)
            written.sort(key=lambda item: float(item[1]), reverse=True)  # stable: ties keep ids
            for rank, (doc_id, score) in enumerate(written, start=1):
                handle.write(f"{query_id} Q0 {doc_id} {rank} {score} {tag}\n")


def read_trec_run(path: str | Path) -> Run:
    """Read a TREC run file, each query's documents sorted by decreasing score."""
    run: Run = {}
    path = Path(path)
    if not path.is_file():
        raise DataError(f"run file {path} does not exist")
    for line_no, line in numbered_lines(path):
        fields = line.split()
        if len(fields) != 6:
            raise DataError(
                f"{path}:{line_no}: expected 6 fields (qid Q0 docid rank score tag), "
                f"got {len(fields)}"
            )
        try:
            score = float(fields[4])
        except ValueError:
            raise DataError(f"{path}:{line_no}: score {fields[4]!r} is not a number") from None
        if not math.isfinite(score):
            raise DataError(f"{path}:{line_no}: score {fields[4]!r} is not finite")
        run.setdefault(fields[0], []).append((fields[2], score))
    for ranking in run.values():
        ranking.sort(key=lambda item: -item[1])
    return run
