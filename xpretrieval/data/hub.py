"""Training examples from a dataset the `datasets` library reads (`hf_dataset`): a Hub id, a
local folder (saved with `save_to_disk`, or data files) or a .parquet, .jsonl or .json file.
Held as Arrow tables (memory-mapped) or, with `streaming`, read as a stream that never holds
the set; either way each epoch's order is drawn from the seed, so a resumed run skips exactly
the examples it had trained on."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpretrieval.core.errors import DataError
from xpretrieval.data.documents import OnDiskDocuments
from xpretrieval.data.examples import Example, TrainingExamples, buffered_shuffle
from xpretrieval.data.hub_layouts import Layout, Texts, TextSet, id_key, recognise

if TYPE_CHECKING:
    from xpretrieval.data.dataset import Split

logger = logging.getLogger(__name__)

FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}
DATASETS_ERRORS = (OSError, ValueError, KeyError, ConnectionError)  # what loading raises


class HubExamples(TrainingExamples):
    """The rows of a dataset as examples: an Arrow table shuffled whole every epoch, or a
    stream shuffled within a buffer (seeded too; the same order when the buffer holds it all)."""

    def __init__(
        self, name: str, rows: Any, layout: Layout, length: int, buffer: int | None
    ) -> None:
        self.name, self.rows, self.layout, self.length = name, rows, layout, length
        self.buffer = buffer  # None: `rows` is a table read by index, else a stream
        self.has_scores = layout.has_scores

    def __len__(self) -> int:
        return self.length

    def epochs(self, seed: int) -> Iterator[Example]:
        rng = random.Random(f"examples:{seed}")  # apart from the sampler's Random(seed)
        while True:
            for at, row in self._shuffled(rng):
                yield self.layout.read(row, f"{self.name}, row {at + 1}")

    def _shuffled(self, rng: random.Random) -> Iterator[tuple[int, Mapping[str, Any]]]:
        """One epoch's (row number, row), in an order drawn from `rng`."""
        if self.buffer is not None:
            return buffered_shuffle(enumerate(self.rows), self.buffer, rng)
        order = list(range(self.length))
        rng.shuffle(order)
        return ((at, self.rows[at]) for at in order)


def read_hub_examples(split: Split) -> HubExamples:
    """The training examples of `split.hf_dataset`, in the layout its columns (or
    `split.hf_columns`) say; the first row is read now, so that a layout, mapping or score
    list that does not fit fails before training (later rows fail when read, naming the row)."""
    name, part, streaming = str(split.hf_dataset), split.split or "train", split.streaming
    rows = open_dataset(name, split.hf_subset, part, streaming)
    first = next(iter(rows), None) if streaming else (rows[0] if len(rows) else None)
    if first is None:
        raise DataError(f"{name}: the dataset is empty")
    layout = recognise(
        list(first), name, split.hf_columns, lambda sets: _separate_texts(split, sets)
    )
    layout.read(first, f"{name}, row 1")
    length = _count(rows, part, name) if streaming else len(rows)
    logger.info("%s: %d training examples, %s layout", name, length, type(layout).__name__)
    return HubExamples(name, rows, layout, length, split.shuffle_buffer if streaming else None)


def open_dataset(path: str, subset: str | None, split: str | None, streaming: bool) -> Any:
    """One split of a dataset (`split` None: the only one it has), in memory or streamed:
    `save_to_disk` folders, data files and Hub ids alike; a failure is one `DataError` line."""
    from datasets import Dataset, IterableDataset, load_dataset, load_from_disk

    local = Path(path)
    try:
        if (local / "state.json").is_file() or (local / "dataset_dict.json").is_file():
            loaded = load_from_disk(str(local))
        elif local.is_file():
            if local.suffix not in FILE_BUILDERS:
                raise DataError(
                    f"{path}: expected a .parquet, .jsonl or .json file, or a dataset folder"
                )
            if _no_rows(local):  # before datasets, whose message for it is obscure
                raise DataError(f"{path}: the dataset is empty")
            builder = FILE_BUILDERS[local.suffix]
            loaded = load_dataset(builder, data_files=str(local), streaming=streaming)
            split = None  # a file is one split (which datasets calls train)
        else:
            loaded = load_dataset(path, subset, split=split, streaming=streaming)
    except DATASETS_ERRORS as error:
        if isinstance(error, DataError):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise DataError(f"{path}: the datasets library cannot read it ({message})") from None
    if not isinstance(loaded, (Dataset, IterableDataset)):
        loaded = _one_split(loaded, split, path)
    if streaming and isinstance(loaded, Dataset):  # saved to disk: streamed from its files
        loaded = loaded.to_iterable_dataset()
    return loaded


def _no_rows(file: Path) -> bool:
    """Whether a parquet file has no rows (its metadata says), a JSON-lines file no line."""
    if file.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_metadata(file).num_rows == 0
    with file.open("rb") as handle:
        return not any(line.strip() for line in handle)


def _one_split(loaded: Mapping[str, Any], split: str | None, path: str) -> Any:
    """`split` of a dataset dict; None: its only split."""
    if split is None and len(loaded) == 1:
        return next(iter(loaded.values()))
    if split not in loaded:
        raise DataError(
            f"{path} has no split {split!r} (its splits: {', '.join(loaded)}); set "
            "dataset.train.split"
        )
    return loaded[split]


def _count(rows: Any, split: str, name: str) -> int:
    """The rows of a stream: from the dataset's metadata when it says, else by a pass (over
    one column where the columns are known): the learner needs an epoch's size at the start."""
    splits = rows.info.splits
    known = splits.get(split) if splits else None
    if known is not None and known.num_examples:
        return int(known.num_examples)
    logger.info("%s: counting the rows (its metadata does not give their number)", name)
    columns = rows.column_names
    return sum(1 for _ in (rows.select_columns(columns[:1]) if columns else rows))


def _separate_texts(split: Split, sets: tuple[TextSet, TextSet]) -> Texts:
    """The query and document sets of a layout of ids: the files `hf_queries` and
    `hf_documents` name, or the Hub dataset's own subsets (`sets` say which, and their
    columns)."""
    name = str(split.hf_dataset)
    hub_id = not Path(name).exists()
    texts = []
    for text_set in sets:
        path = getattr(split, text_set.setting)
        if path is None and not hub_id:
            raise DataError(
                f"dataset.train.{text_set.setting}: {name} holds ids, its texts apart; give "
                f"the {text_set.subset} set ({text_set.id_column}, {text_set.text_column})"
            )
        if path is None:
            rows = open_dataset(name, text_set.subset, None, streaming=False)
            where = f"{name} ({text_set.subset})"
        else:
            rows = open_dataset(path, None, None, streaming=False)
            where = f"{path}, the {text_set.subset} of {name}"
        texts.append(ArrowTexts(rows, text_set, where))
    return texts[0], texts[1]


class ArrowTexts(OnDiskDocuments):
    """id -> text of an (id, text) dataset, the texts left in its Arrow table (memory-mapped,
    not read into memory), the ids indexed as documents on disk are."""

    def __init__(self, rows: Any, text_set: TextSet, name: str) -> None:
        id_column, self.text_column = text_set.id_column, text_set.text_column
        expected = (id_column, self.text_column)
        missing = [column for column in expected if column not in rows.column_names]
        if missing:
            raise DataError(
                f"{name}: no column {', '.join(missing)} (its columns: "
                f"{', '.join(rows.column_names)}); expected ({', '.join(expected)})"
            )
        self.rows, self.name = rows, name
        batches = rows.select_columns([id_column]).iter(batch_size=10_000)
        cells = (item for batch in batches for item in batch[id_column])
        ids = (
            item if isinstance(item, str) else id_key(item, f"{name}, row {row + 1}")
            for row, item in enumerate(cells)
        )
        super().__init__(ids, lambda row: f"{name}, row {row + 1}")

    def text_at(self, row: int) -> str:
        return self.rows[row][self.text_column]

    def iter_texts(self) -> Iterator[str]:
        return (row[self.text_column] for row in self.rows)
