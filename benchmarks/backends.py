"""Encoding through inference backends: documents/s of xpretrieval's backends (torch, ONNX
Runtime, OpenVINO; fp32, bf16, int8) against the fastest of sentence-transformers' backends at
the same precision, on the same model, documents, batch size and length. The peers run in a
virtual environment of their own (benchmarks/peer_backends.py, `make bench` creates it), one
after ours; each backend is measured alone (median of passes after a warm-up), one after
another.

The JSON names each figure `<kind>_encoding[_bf16|_int8].vs_fastest_backend.ratio`.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import subprocess
import tempfile
from pathlib import Path

import torch

from benchmarks.common import MODEL, matmul_gflops, precisions, row, write_result
from benchmarks.encoding import disagreement, document_flops, rates
from xpretrieval.core.device import Precision
from xpretrieval.data import Split
from xpretrieval.models import Dense, Splade
from xpretrieval.models.encoding import Batching, encode_texts

CPU = torch.device("cpu")
PEERS_PYTHON = Path(__file__).parent.parent / ".venv-peers" / "bin" / "python"
# ours: (backend, int8, precision) by the name the table gives it; "compiled": model.compile
OURS = {
    "torch fp32": ("torch", "none", Precision.fp32),
    "torch bf16": ("torch", "none", Precision.bf16),
    "torch-compiled fp32": ("torch", "none", Precision.fp32),
    "torch-compiled bf16": ("torch", "none", Precision.bf16),
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
    """Documents/s and the disagreement with torch fp32 of each of xpretrieval's backends, one
    after another, each released before the next: SPLADE's graphs compute the vocabulary logits
    of whole batches (about 1 GB for 32 texts of 256 tokens), and holding every backend's
    runtime at once ran this process out of 24 GB."""
    config = Dense if kind == "dense" else Splade
    figures, reference = {}, None
    with tempfile.TemporaryDirectory() as source:  # a folder of our own: exports go beside it
        config(name_or_path=model, doc_max_length=length).build().save(source)
        for name, (backend, int8, precision) in OURS.items():
            if precision is Precision.bf16 and Precision.bf16 not in precisions():
                continue
            compiled = name.startswith("torch-compiled")
            if kind == "splade" and compiled:  # about 40 s of compiling each: dense alone
                continue
            settings = {"backend": backend, "backend_quantization": int8, "compile": compiled}
            built = config(name_or_path=source, doc_max_length=length, **settings).build().eval()
            encoder = built.text_encoder(is_query=False)

            def encode(texts: list[str], encoder=encoder, precision=precision) -> torch.Tensor:  # noqa: ANN001
                return encode_texts(encoder, texts, Batching(batch), CPU, precision)

            speed, vectors = rates({name: encode}, texts, repeats)
            reference = vectors[name] if reference is None else reference  # torch fp32 first
            figures[name] = {
                "docs_per_second": speed[name],
                "disagreement": disagreement(kind, vectors[name], reference),
            }
            del built, encoder, encode
            gc.collect()
    return figures


def peers(kind: str, model: str, texts: list[str], batch: int, length: int, repeats: int) -> dict:
    """sentence-transformers' backends, measured by peer_backends.py in .venv-peers."""
    if not PEERS_PYTHON.exists():
        raise SystemExit(f"{PEERS_PYTHON} is missing: `make bench` creates it")
    with tempfile.TemporaryDirectory() as folder:
        # a local folder, the one ours read (sentence-transformers files included): the peers'
        # exporters look a Hub name up online, and SPLADE gets the same new head weights
        source = str(Path(folder) / kind)
        (Dense if kind == "dense" else Splade)(name_or_path=model).build().save(source)
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
        flops = document_flops(kind, texts, args.model, args.length)
        for group, figure in against_fastest(mine, theirs).items():
            suffix = "" if group == "fp32" else f"_{group}"
            limits = {}
            if group != "int8":  # the limit of fp32 or bf16 products (int8's is not measured)
                ideal = matmul_gflops(Precision(group)) * 1e9 / flops
                limits = {
                    "limit_fraction": figure["xpretrieval_docs_per_second"] / ideal,
                    "peer_limit_fraction": figure["peer_docs_per_second"] / ideal,
                }
            figure.update(limits)
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
                    **limits,
                )
            )
    write_result("backends", {**result, "rows": rows})


if __name__ == "__main__":
    main()
