"""Files: atomic output (a file or folder appears complete or not at all, even if the process
dies), and input read line by line with the line numbers that errors name."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from xpretrieval.core.errors import ResourceError


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary sibling of `path` for writing; rename it over `path` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600: a group could not read it
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        _raise_if_disk_full(error, target)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text`, atomically."""
    with atomic_file(path) as handle:
        handle.write(text)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder to fill; it replaces `path` only once the block succeeds.

    An existing `path` is kept until the new folder is complete, so a crash while saving
    never leaves a checkpoint half-written or removes the previous one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_if_disk_full(error, target)
        raise


# what the writers say when the disk or quota is full: OSError's errno, or the text of torch's
# and safetensors' own errors, which carry no errno
FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_DISK_WORDS = ("No space left on device", "Disk quota exceeded", "file write failed")


def _raise_if_disk_full(error: BaseException, target: Path) -> None:
    """A write that failed for want of space, as one line naming what was not written (the
    temporary copy is gone and an earlier version of `target` is intact)."""
    full = isinstance(error, OSError) and error.errno in FULL_DISK_ERRNOS
    if full or any(words in str(error) for words in FULL_DISK_WORDS):
        raise ResourceError(
            f"{target}: not written, the disk is full ({str(error).splitlines()[0][:120]}); "
            "nothing half-written was left: free space (or write elsewhere with hydra.run.dir) "
            "and run again, or resume"
        ) from None


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping a YAML file holds (a run's config.yaml); empty when it is absent or holds
    none."""
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    return loaded if isinstance(loaded, dict) else {}


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of text cells, one row a line (reports and suite tables)."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def current_umask() -> int:
    """The process's umask (reading it means setting it: it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-empty lines without their end-of-line (`\\n` or `\\r\\n`), numbered from 1; a UTF-8
    byte-order mark before the first line is dropped (editors on Windows write one); a line
    that is not UTF-8 is a `DataError` naming the file and line."""
    from xpretrieval.core.errors import DataError

    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise DataError(f"{path}:{line_no}: not valid UTF-8 ({error.reason})") from None
            if line.strip():
                yield line_no, line
