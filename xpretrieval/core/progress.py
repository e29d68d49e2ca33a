"""Progress of long work (encoding, search, re-ranking, reading rankings, BM25): a tqdm bar on
a terminal; elsewhere (a batch job, a SLURM log) a log line every `INTERVAL_SECONDS` and one
when done, so a log file shows how far the work got and how fast it goes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

logger = logging.getLogger("xpretrieval.core.progress")

T = TypeVar("T")

INTERVAL_SECONDS = 30.0  # between log lines when stderr is not a terminal
QUIET_SECONDS = 2.0  # work done faster than this gets no closing line


def progress(
    items: Iterable[T],
    desc: str,
    total: int | None = None,
    unit: str = "it",
    size: Callable[[T], int] | None = None,
) -> Iterator[T]:
    """`items`, one by one, showing how many units are done out of `total` (len(items) if
    known): each item is one unit, or `size(item)` of them (a batch of texts)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    units = size if size is not None else _one
    bar = tqdm(desc=desc, total=total, unit=unit, leave=False, disable=None)
    if not bar.disable:
        with bar:
            for item in items:
                yield item
                bar.update(units(item))
        return
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += units(item)
        now = time.monotonic()
        if now - last >= INTERVAL_SECONDS:
            logger.info("%s", _line(desc, done, total, unit, now - start))
            last = now
    elapsed = time.monotonic() - start
    if elapsed >= QUIET_SECONDS:
        logger.info("%s (done)", _line(desc, done, total, unit, elapsed))


def _one(item: object) -> int:
    return 1


def _line(desc: str, done: int, total: int | None, unit: str, elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else float("inf")
    count = f"{done}/{total}" if total is not None else str(done)
    return f"{desc}: {count} {unit} in {elapsed:.0f} s ({rate:.1f} {unit}/s)"
