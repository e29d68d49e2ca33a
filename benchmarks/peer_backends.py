"""sentence-transformers' inference backends (torch, ONNX through optimum, OpenVINO through
optimum-intel; fp32, bf16 and dynamic int8), run by `benchmarks.backends` in a virtual
environment of their own (`make bench` creates .venv-peers): optimum's exporters do not install
beside the transformers release xpretrieval uses. Reads the texts and settings from a JSON file,
writes each backend's documents/s and its disagreement with the torch fp32 vectors as JSON.
Imports no xpretrieval.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

F32, BF16 = {"INFERENCE_PRECISION_HINT": "f32"}, {"INFERENCE_PRECISION_HINT": "bf16"}


def loaders(kind: str, model: str, folder: Path) -> dict[str, Callable[[], object]]:
    """Each backend's model, by the name the benchmark's JSON gives it."""
    import sentence_transformers as st

    cls = st.SentenceTransformer if kind == "dense" else st.SparseEncoder

    def onnx_int8() -> object:
        exported = cls(model, device="cpu", backend="onnx")
        exported.save(str(folder))
        st.export_dynamic_quantized_onnx_model(exported, "avx512_vnni", str(folder))
        kwargs = {"file_name": "onnx/model_qint8_avx512_vnni.onnx"}
        return cls(str(folder), device="cpu", backend="onnx", model_kwargs=kwargs)

    return {
        "torch fp32": lambda: cls(model, device="cpu"),
        "torch bf16": lambda: cls(model, device="cpu"),
        "onnx fp32": lambda: cls(model, device="cpu", backend="onnx"),
        "onnx int8 dynamic": onnx_int8,
        "openvino fp32": lambda: cls(
            model, device="cpu", backend="openvino", model_kwargs={"ov_config": F32}
        ),
        "openvino bf16": lambda: cls(
            model, device="cpu", backend="openvino", model_kwargs={"ov_config": BF16}
        ),
    }


def disagreement(kind: str, vectors: torch.Tensor, reference: torch.Tensor) -> float:
    """Dense: 1 - the smallest cosine; SPLADE: the largest term-weight difference."""
    if kind == "dense":
        return 1 - torch.nn.functional.cosine_similarity(vectors, reference).min().item()
    return (vectors - reference).abs().max().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("settings", type=Path, help="JSON: kind, model, texts, batch_size, ...")
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    settings = json.loads(args.settings.read_text())
    texts, batch_size, repeats = settings["texts"], settings["batch_size"], settings["repeats"]
    kind = settings["kind"]
    results, reference = {}, None
    with tempfile.TemporaryDirectory() as folder:
        for name, load in loaders(kind, settings["model"], Path(folder)).items():
            model = load()
            model.max_seq_length = settings["length"]
            bf16 = name == "torch bf16"

            def encode(batch: list[str], model: object = model, bf16: bool = bf16) -> torch.Tensor:
                autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else None
                with autocast or contextlib.nullcontext():
                    out = model.encode(batch, batch_size=batch_size, convert_to_tensor=True)
                return out.to_dense().float() if kind == "splade" else out.float()

            encode(texts[: len(texts) // 2 or 1])  # warm-up (ONNX Runtime and OpenVINO too)
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                vectors = encode(texts)
                seconds.append(time.perf_counter() - start)
            reference = reference if name != "torch fp32" else vectors
            results[name] = {
                "docs_per_second": len(texts) / statistics.median(seconds),
                "disagreement": disagreement(kind, vectors, reference),
            }
    args.output.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
