"""Export one side of a bi-encoder (queries or documents) to ONNX or OpenVINO through their own
exporters, optionally quantised to int8 by ONNX Runtime's or NNCF's quantisers.

The exported graph is the padded forward of the side: token ids, attention mask and special
tokens mask in, the same representations as `encode_queries` / `encode_documents` out (the
pooled vector, the term weights, the token vectors). Export traces the model as it is, so a
trained checkpoint's head, pooling and pruning are in the graph.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

INPUT_NAMES = ("input_ids", "attention_mask", "special_tokens_mask")
OUTPUT_NAME = "representations"
ONNX_OPSET = 17
# part of every export's cache name: raised whenever what an export writes changes
EXPORT_RECIPE = 3


class Backend(Enum):
    """The runtime that encodes texts for search: PyTorch itself, ONNX Runtime or OpenVINO."""

    torch = "torch"
    onnx = "onnx"
    openvino = "openvino"


class BackendQuantization(Enum):
    """int8 for an exported graph: none; dynamic (int8 weights, activations quantised as they
    come: ONNX Runtime's dynamic quantisation, OpenVINO's int8 weight compression); static
    (weights and activations, with ranges calibrated on texts of the collection encoded)."""

    none = "none"
    dynamic = "dynamic"
    static = "static"


class ExportedSide(nn.Module):
    """The padded forward of one side of a transformer bi-encoder, as exporters trace it: the
    plain Hugging Face forward (no packing, no chunked pooling), then the model's `represent`."""

    def __init__(self, model: Any, is_query: bool) -> None:
        super().__init__()
        self.model = model
        self.encoder = model.side_encoder(is_query)
        self.is_query = is_query

    def example(self, batch: dict[str, np.ndarray]) -> tuple[Tensor, ...]:
        """A padded batch as the traced inputs, on the model's device."""
        device = next(self.encoder.parameters()).device
        return tuple(torch.from_numpy(batch[name]).to(device) for name in INPUT_NAMES)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, special: Tensor) -> Tensor:
        output = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return self.model.represent(output, attention_mask, special, self.is_query)


def padded_arrays(batch: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """A padded batch (ids, attention mask, special-tokens mask) as the graphs' int64 inputs."""
    return {name: batch[name].to(torch.int64).cpu().numpy() for name in INPUT_NAMES}


def export_onnx(
    side: ExportedSide,
    example: dict[str, np.ndarray],
    target: Path,
    quantization: BackendQuantization,
    calibration: list[dict[str, np.ndarray]],
) -> None:
    """Write `side` as the ONNX file `target` (torch's exporter), then quantise it in place."""
    arguments = side.example(example)
    dynamic = {name: {0: "batch", 1: "length"} for name in INPUT_NAMES}
    float_graph = target.with_suffix(".float.onnx") if quantization.value != "none" else target
    with _quiet_tracing(), _eager_attention(side.encoder):
        torch.onnx.export(
            side,
            arguments,
            str(float_graph),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={**dynamic, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,  # the TorchScript exporter: dynamic lengths without onnxscript rewrites
        )
    if quantization is BackendQuantization.none:
        return
    from onnxruntime.quantization import QuantType, quantize_dynamic, quantize_static

    # the matrix products, weights per output channel (dynamic int8 MiniLM on 120 SciFact
    # documents: mean cosine with fp32 0.935 per tensor, 0.995 per channel); pooling,
    # activations and pruning stay exact (a representation of zeros would get a zero range,
    # which ONNX Runtime's static quantiser cannot scale)
    products = {
        "weight_type": QuantType.QInt8,
        "op_types_to_quantize": ["MatMul"],
        "per_channel": True,
    }
    if quantization is BackendQuantization.dynamic:
        quantize_dynamic(float_graph, target, **products)
    else:
        reader = _CalibrationReader(float_graph, calibration)
        quantize_static(float_graph, target, reader, **products)
    float_graph.unlink()


class _CalibrationReader:
    """ONNX Runtime's calibration data reader over padded batches, restricted to the inputs
    the graph kept (a dense model's graph has no special-tokens mask)."""

    def __init__(self, graph: Path, batches: list[dict[str, np.ndarray]]) -> None:
        import onnx

        kept = {node.name for node in onnx.load(str(graph), load_external_data=False).graph.input}
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            [{k: v for k, v in batch.items() if k in kept} for batch in batches]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def export_openvino(
    side: ExportedSide,
    example: dict[str, np.ndarray],
    target: Path,
    quantization: BackendQuantization,
    calibration: list[dict[str, np.ndarray]],
) -> None:
    """Write `side` as the OpenVINO IR `target` (.xml and .bin), converted by OpenVINO from
    the torch module and quantised by NNCF when asked."""
    import openvino as ov

    arguments = side.example(example)
    with _quiet_tracing():
        graph = ov.convert_model(side, example_input=arguments)
    for port, name in zip(graph.inputs, INPUT_NAMES, strict=True):
        port.get_tensor().set_names({name})
        graph.reshape({port: ov.PartialShape([-1, -1])})
    if quantization is not BackendQuantization.none:
        import nncf

        if quantization is BackendQuantization.dynamic:
            graph = nncf.compress_weights(graph, mode=nncf.CompressWeightsMode.INT8_ASYM)
        else:
            dataset = nncf.Dataset(calibration, lambda batch: tuple(batch.values()))
            graph = nncf.quantize(
                graph, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration)
            )
    ov.save_model(graph, str(target))


@contextmanager
def _eager_attention(encoder: Any) -> Iterator[None]:
    """Trace attention as its plain products and softmax: SDPA exports with a NaN guard per
    layer over every [batch, heads, length, length] score (IsNaN, Where), which ONNX Runtime
    runs as separate passes (MiniLM, 32 x 256 tokens, 2 threads: 1.36 s a batch against 0.95
    eager, as optimum's export). The encoder's own attention is restored after."""
    previous = getattr(getattr(encoder, "config", None), "_attn_implementation", None)
    switch = getattr(encoder, "set_attn_implementation", None)
    if previous in (None, "eager") or switch is None:
        yield
        return
    switch("eager")
    try:
        yield
    finally:
        switch(previous)


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Trace with gradients off (outside inference mode, which exporters cannot trace), without
    the tracers' warnings: Python values frozen into the graph (shapes read as ints) concern
    branches that the exported representations are tested against."""
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        for category in (torch.jit.TracerWarning, UserWarning, DeprecationWarning):
            warnings.simplefilter("ignore", category)
        yield
