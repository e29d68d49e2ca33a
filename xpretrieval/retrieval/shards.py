"""Corpus encoding in shards: the collection cut into fixed slices of `shard_size` documents,
shard i encoded by process i mod N and written to disk when finished (atomically), then read
back in order to build the index. An interrupted encoding resumes from its finished shards;
the vectors do not depend on how many processes encoded them (a shard is batched the same
whatever the number of processes)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse
import torch
import torch.multiprocessing as mp
from torch import Tensor

from xpretrieval.core import distributed
from xpretrieval.core.device import Precision
from xpretrieval.core.distributed import ALONE, World
from xpretrieval.core.errors import ConfigError
from xpretrieval.core.io import atomic_file, write_json
from xpretrieval.models.base import BiEncoder, SparseBiEncoder
from xpretrieval.models.encoding import Batching, Reps, encode_texts

logger = logging.getLogger(__name__)

MANIFEST = "shards.json"
READ_BATCH = 256  # rows handed to the index at a time
REENCODE = "delete it and run again: that shard alone is encoded again"


@dataclass(frozen=True)
class Sharding:
    """Where and how a collection is encoded in shards: `folder`, `shard_size` documents per
    shard, and who encodes them: the processes of `world` (torchrun: each on its own device,
    `devices[0]`), or one process per device of `devices` (one device: this process)."""

    folder: Path
    shard_size: int
    devices: tuple[torch.device, ...]
    world: World = ALONE

    def encode(
        self,
        model: BiEncoder,
        texts: Sequence[str],
        batching: Batching,
        precision: Precision,
        fingerprint: dict,
    ) -> None:
        """Encode the shards not yet in `folder`; returns when every process has finished."""
        settings = (texts, self, batching, precision, fingerprint)
        if self.world.parallel:
            encode_shards(
                model,
                texts,
                self.folder,
                self.shard_size,
                self.world,
                batching,
                self.devices[0],
                precision,
                fingerprint,
            )
            distributed.barrier()
        elif len(self.devices) == 1:
            _encode_on_device(0, model, *settings)
        else:
            mp.spawn(_encode_on_device, args=(model, *settings), nprocs=len(self.devices))

    def read(self, n_texts: int) -> Iterator[tuple[Tensor, Reps]]:
        """Every shard's `(rows, reps)`, in order (after `encode`)."""
        return read_shards(self.folder, n_texts, self.shard_size)


def _encode_on_device(
    rank: int,
    model: BiEncoder,
    texts: Sequence[str],
    sharding: Sharding,
    batching: Batching,
    precision: Precision,
    fingerprint: dict,
) -> None:
    """Process `rank` of the sharding's devices: its shards, on its device."""
    device, processes = sharding.devices[rank], len(sharding.devices)
    if device.type == "cpu" and processes > 1:  # CPU processes share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes))
    model = model.to(device)
    world = World(rank, processes)
    encode_shards(
        model,
        texts,
        sharding.folder,
        sharding.shard_size,
        world,
        batching,
        device,
        precision,
        fingerprint,
    )


def shard_path(folder: Path, index: int) -> Path:
    return folder / f"shard-{index:06d}.pt"


def shard_count(n_texts: int, shard_size: int) -> int:
    return -(-n_texts // shard_size)


def encode_shards(
    model: BiEncoder,
    texts: Sequence[str],
    folder: Path,
    shard_size: int,
    world: World,
    batching: Batching,
    device: torch.device,
    precision: Precision,
    fingerprint: dict,
) -> None:
    """Encode this process's shards of `texts` into `folder` with `model` as documents,
    skipping those already there. `fingerprint` (the model and documents, as saved indexes
    record them) must match the folder's: shards of another model or collection are never
    mixed in. Sparse models' term weights are kept and stored as their non-zeros."""
    sparse = isinstance(model, SparseBiEncoder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"shard_size": shard_size, "documents": len(texts), **fingerprint}
    _check_manifest(folder, manifest, world)
    n_shards = shard_count(len(texts), shard_size)
    mine = range(world.rank, n_shards, world.size)
    done = [i for i in mine if _complete(shard_path(folder, i))]
    if done:
        logger.info("Resuming the encoding: %d of this process's shards are done", len(done))
    encoder = model.text_encoder(is_query=False)
    for index in mine:
        path = shard_path(folder, index)
        if _complete(path):
            continue
        if path.exists():
            logger.warning("%s is damaged (truncated?): encoding the shard again", path)
        start = index * shard_size
        shard = texts[start : start + shard_size]
        desc = f"encode shard {index + 1}/{n_shards}"
        vectors = encode_texts(encoder, shard, batching, device, precision, desc, sparse)
        stored = _packed(vectors) if sparse else {"dense": vectors.cpu()}
        with atomic_file(path, "wb") as handle:
            torch.save({"rows": torch.arange(start, start + len(shard)), **stored}, handle)


def read_shards(folder: Path, n_texts: int, shard_size: int) -> Iterator[tuple[Tensor, Reps]]:
    """Every shard's `(rows, reps)`, in batches of READ_BATCH rows, as indexes consume them
    (sparse shards as sparse rows)."""
    for index in range(shard_count(n_texts, shard_size)):
        path = shard_path(folder, index)
        if not path.is_file():
            raise ConfigError(f"{path}: shard {index} was never written; encode again")
        expected = min(shard_size, n_texts - index * shard_size)
        try:
            shard = torch.load(path, weights_only=True)
            rows = shard["rows"]
            vectors = shard["dense"] if "dense" in shard else _unpacked(shard)
        except (RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as error:
            reason = (str(error).strip() or type(error).__name__).splitlines()[0].split(". ")[0]
            raise ConfigError(f"{path} is damaged ({reason}); {REENCODE}") from None
        if len(rows) != expected or vectors.shape[0] != expected:
            raise ConfigError(f"{path} holds {len(rows)} documents, not {expected}; {REENCODE}")
        for start in range(0, len(rows), READ_BATCH):
            yield rows[start : start + READ_BATCH], vectors[start : start + READ_BATCH]


def _complete(path: Path) -> bool:
    """Whether the shard is written whole: its zip archive (torch.save's) ends with the
    directory a truncated copy lacks; shards are written atomically, so a damaged one is never
    another process's shard in progress and is encoded again."""
    return path.is_file() and zipfile.is_zipfile(path)


def _packed(vectors: scipy.sparse.csr_matrix) -> dict[str, Tensor]:
    """Row pointers, columns and values of the non-zeros (CSR), and the width."""
    return {
        "pointers": torch.from_numpy(vectors.indptr.astype(np.int64)),
        "columns": torch.from_numpy(vectors.indices.astype(np.int64)),
        "values": torch.from_numpy(vectors.data),
        "width": torch.tensor(vectors.shape[1]),
    }


def _unpacked(shard: dict[str, Tensor]) -> scipy.sparse.csr_matrix:
    """A packed shard's rows as sparse rows (sharing the loaded arrays)."""
    arrays = (shard[name].numpy() for name in ("values", "columns", "pointers"))
    return scipy.sparse.csr_matrix(tuple(arrays), shape=(len(shard["rows"]), int(shard["width"])))


def _check_manifest(folder: Path, manifest: dict, world: World) -> None:
    path = folder / MANIFEST
    if path.is_file():
        if json.loads(path.read_text()) != json.loads(json.dumps(manifest)):
            raise ConfigError(
                f"{folder}: its shards were encoded by another model, from other documents or "
                "with another shard_size; remove the folder or choose another"
            )
    elif world.main:
        write_json(path, manifest)
