"""Encoding through inference backends: documents/s of xpretrieval's backends (torch, ONNX
Runtime, OpenVINO; fp32, bf16, int8) against the fastest of sentence-transformers' backends at
the same precision, on the same model, documents, batch size and length. The peers run in a
virtual environment of their own (benchmarks/peer_backends.py, `make bench` creates it), one
after ours; each side's backends take turns, as in benchmarks/encoding.py.

The JSON names each figure `<kind>_encoding[_bf16|_int8].vs_fastest_backend.ratio`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import tempfile
from pathlib import Path

import torch

from benchmarks.common import MODEL, precisions, row, write_result
from benchmarks.encoding import rates
from xpretrieval.core.device import Precision
from xpretrieval.data import Split
from xpretrieval.models import Dense, Splade
from xpretrieval.models.encoding import Batching, encode_texts

CPU = torch.device("cpu")
PEERS_PYTHON = Path(__file__).parent.parent / ".venv-peers" / "bin" / "python"
# ours: (backend, int8, precision) by the name the table gives it
OURS = {
    "torch fp32": ("torch", "none", Precision.fp32),
    "torch bf16": ("torch", "none", Precision.bf16),
    "onnx fp32": ("onnx", "none", Precision.fp32),
    "onnx int8 dynamic": ("onnx", "dynamic", Precision.fp32),
    "onnx int8 static": ("onnx", "static", Precision.fp32),
    "openvino fp32": ("openvino", "none", Precision.fp32),
    "openvino bf16": ("openvino", "none", Precision.bf16),
    "openvino int8 dynamic": ("openvino", "dynamic", Precision.fp32),
    "openvino int8 static": ("openvino", "static", Precision.fp32),
}


def precision_of(name: str) -> str:
    """fp32, bf16 or int8: the group a backend's figure is compared within."""
    return name.split()[1]


def ours(kind: str, model: str, texts: list[str], batch: int, length: int, repeats: int) -> dict:
    """Documents/s and the disagreement with torch fp32 of each of xpretrieval's backends."""
    config = Dense if kind == "dense" else Splade
    encoders = {}
    with tempfile.TemporaryDirectory() as source:  # a folder of our own: exports go beside it
        config(name_or_path=model, doc_max_length=length).build().save(source)
        for name, (backend, int8, precision) in OURS.items():
            if precision is Precision.bf16 and Precision.bf16 not in precisions():
                continue
            settings = {"backend": backend, "backend_quantization": int8}
            built = config(name_or_path=source, doc_max_length=length, **settings).build().eval()
            encoder = built.text_encoder(is_query=False)

            def encode(texts: list[str], encoder=encoder, precision=precision) -> torch.Tensor:  # noqa: ANN001
                return encode_texts(encoder, texts, Batching(batch), CPU, precision)

            encoders[name] = encode
        speed, vectors = rates(encoders, texts, repeats)
    reference = vectors["torch fp32"]
    return {
        name: {"docs_per_second": speed[name], "disagreement": disagreement(kind, v, reference)}
        for name, v in vectors.items()
    }


def disagreement(kind: str, vectors: torch.Tensor, reference: torch.Tensor) -> float:
    """Dense: 1 - the smallest cosine; SPLADE: the largest term-weight difference."""
    if kind == "dense":
        return 1 - torch.nn.functional.cosine_similarity(vectors, reference).min().item()
    return (vectors - reference).abs().max().item()


def peers(kind: str, model: str, texts: list[str], batch: int, length: int, repeats: int) -> dict:
    """sentence-transformers' backends, measured by peer_backends.py in .venv-peers."""
    if not PEERS_PYTHON.exists():
        raise SystemExit(f"{PEERS_PYTHON} is missing: `make bench` creates it")
    with tempfile.TemporaryDirectory() as folder:
        source = model
        if kind == "splade":  # the same head weights as ours: our saved folder
            source = str(Path(folder) / "splade")
            Splade(name_or_path=model, doc_max_length=length).build().save(source)
        settings = Path(folder) / "settings.json"
        settings.write_text(
            json.dumps(
                {"kind": kind, "model": source, "texts": texts, "batch_size": batch}
                | {"length": length, "repeats": repeats}
            )
        )
        output = Path(folder) / "peers.json"
        command = [str(PEERS_PYTHON), "-m", "benchmarks.peer_backends", str(settings), str(output)]
        subprocess.run(command, check=True, cwd=Path(__file__).parent.parent)
        return json.loads(output.read_text())


def against_fastest(ours: dict, theirs: dict) -> dict[str, dict]:
    """For each precision both sides ran: the fastest backend of each and ours ÷ theirs."""
    figures = {}
    for group in ("fp32", "bf16", "int8"):
        mine = {n: f for n, f in ours.items() if precision_of(n) == group}
        peer = {n: f for n, f in theirs.items() if precision_of(n) == group}
        if not mine or not peer:
            continue
        best, best_peer = (max(d, key=lambda n: d[n]["docs_per_second"]) for d in (mine, peer))
        rate, peer_rate = mine[best]["docs_per_second"], peer[best_peer]["docs_per_second"]
        figures[group] = {
            "xpretrieval_backend": best,
            "xpretrieval_docs_per_second": rate,
            "peer_backend": best_peer,
            "peer_docs_per_second": peer_rate,
            "ratio": rate / peer_rate,
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--documents", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=256)
    args = parser.parse_args()
    collection = Split(ir_datasets="beir/scifact/test").load()
    texts = list(itertools.islice(collection.documents.values(), args.documents))
    settings = (args.model, texts, args.batch_size, args.length, args.repeats)
    result, rows = {"settings": vars(args)}, []
    for kind in ("dense", "splade"):
        mine, theirs = ours(kind, *settings), peers(kind, *settings)
        result[f"{kind}_backends"] = {"xpretrieval": mine, "sentence-transformers": theirs}
        for group, figure in against_fastest(mine, theirs).items():
            suffix = "" if group == "fp32" else f"_{group}"
            result[f"{kind}_encoding{suffix}"] = {"vs_fastest_backend": figure}
            rows.append(
                row(
                    f"{kind} encoding, {group}: {figure['xpretrieval_backend']} vs fastest",
                    "docs/s",
                    figure["xpretrieval_docs_per_second"],
                    figure["peer_docs_per_second"],
                    f"SentenceTransformer {figure['peer_backend']}"
                    if kind == "dense"
                    else f"SparseEncoder {figure['peer_backend']}",
                )
            )
    write_result("backends", {**result, "rows": rows})


if __name__ == "__main__":
    main()
