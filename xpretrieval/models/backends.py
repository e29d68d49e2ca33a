"""Encoding through an exported graph (`model.backend=onnx|openvino`): each side of a bi-encoder
is exported on first use, quantised when asked, and kept on disk beside the checkpoint (or in
the user's cache for a Hub model), named by the weights and settings it was exported from, so
that later runs load it instead of exporting again.

Only encoding for search runs there; training, and the gradients it needs, stay on PyTorch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence, Sized
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor

from xpretrieval.core.checks import check_range
from xpretrieval.core.errors import ConfigError
from xpretrieval.core.io import atomic_directory
from xpretrieval.models.backend_export import (
    EXPORT_RECIPE,
    Backend,
    BackendQuantization,
    ExportedSide,
    export_onnx,
    export_openvino,
    padded_arrays,
)
from xpretrieval.models.base import DenseBiEncoder, SparseBiEncoder
from xpretrieval.models.fingerprint import weights_fingerprint

logger = logging.getLogger(__name__)

GRAPH_FILE = {Backend.onnx: "model.onnx", Backend.openvino: "model.xml"}
EXPORTERS = {Backend.onnx: export_onnx, Backend.openvino: export_openvino}
CALIBRATION_BATCH = 16  # texts per calibration batch


def check_backend_fields(config: Any) -> None:
    """A backend only for bi-encoders, int8 only for an exported graph, compiling only for
    PyTorch's own passes."""
    if config.compile and config.backend is not Backend.torch:
        raise ValueError(
            f"compile: torch.compile speeds up PyTorch's passes; backend={config.backend.value} "
            "runs an exported graph instead. Set one of them"
        )
    if config.backend is Backend.torch:
        if config.backend_quantization is not BackendQuantization.none:
            raise ValueError(
                f"backend_quantization={config.backend_quantization.value} quantises an "
                "exported graph: set model.backend=onnx or model.backend=openvino"
            )
        return
    if not config.is_kind((DenseBiEncoder, SparseBiEncoder)):
        raise ValueError(
            f"backend={config.backend.value}: exported graphs encode for dense and SPLADE "
            f"models; a {type(config).__name__} model runs on torch"
        )
    check_range("backend_calibration_texts", config.backend_calibration_texts, at_least=1)


class BackendSide:
    """One side (queries or documents) of a bi-encoder encoded by an exported graph: `prepare`
    sees the texts about to be encoded (static quantisation calibrates on a sample of them),
    `forward` represents a batch of the model's token sequences."""

    def __init__(self, model: Any, is_query: bool) -> None:
        self.model, self.config, self.is_query = model, model.config, is_query
        self.calibration: list[dict[str, np.ndarray]] = []
        self._runner: _Runner | None = None

    def prepare(self, texts: Sequence[str]) -> None:
        """Draw the calibration sample (static quantisation): texts spread evenly over all."""
        if self.config.backend_quantization is not BackendQuantization.static or self.calibration:
            return
        count = min(self.config.backend_calibration_texts, len(texts))
        picks = np.linspace(0, len(texts) - 1, count).round().astype(int) if count else []
        tokens = self.model.tokenize([texts[i] for i in picks], self.is_query)
        for start in range(0, len(tokens), CALIBRATION_BATCH):
            batch = self.model.pad(tokens[start : start + CALIBRATION_BATCH])
            self.calibration.append(padded_arrays(batch))

    def forward(self, tokens: Sequence[Sized]) -> Tensor:
        """Representations `[n, ...]` of one batch of token sequences, as float32."""
        inputs = padded_arrays(self.model.pad(tokens))
        if self._runner is None:
            self._runner = self._load(inputs)
        return torch.from_numpy(np.asarray(self._runner(inputs, _bf16_asked())))

    def _load(self, example: dict[str, np.ndarray]) -> _Runner:
        backend, quantization = self.config.backend, self.config.backend_quantization
        if quantization is BackendQuantization.static and not self.calibration:
            raise ConfigError(
                "model.backend_quantization=static needs calibration texts: encode through "
                "encode_queries / encode_documents or an index, which provide them"
            )
        folder = self._folder()
        graph = folder / GRAPH_FILE[backend]
        if not graph.exists():
            what = f"{backend.value} ({quantization.value} int8)"
            logger.info("Exporting the %s encoder to %s: %s", self._side, what, folder)
            with atomic_directory(folder) as building:
                side = ExportedSide(self.model, self.is_query).eval()
                export = EXPORTERS[backend]
                export(side, example, building / graph.name, quantization, self.calibration)
        return _Runner(backend, graph)

    @property
    def _side(self) -> str:
        return "query" if self.is_query else "document"

    def _folder(self) -> Path:
        """Where this side's graph is kept: named by the weights, the settings and, for static
        quantisation, the calibration texts' tokens."""
        config = self.config
        settings = OmegaConf.to_container(OmegaConf.structured(config), enum_to_str=True)
        for name in ("name_or_path", *config.unsaved_fields()):
            settings.pop(name, None)
        digest = hashlib.sha1(json.dumps([EXPORT_RECIPE, settings], sort_keys=True).encode())
        digest.update((weights_fingerprint(self.model) or "").encode())
        for batch in self.calibration:
            digest.update(batch["input_ids"].tobytes())
        kind = f"{self._side}-{config.backend.value}-{config.backend_quantization.value}"
        return exports_home(config.name_or_path) / f"{kind}-{digest.hexdigest()[:16]}"


def exports_home(name_or_path: str) -> Path:
    """Beside a local checkpoint that can be written (`exports/`), else in the user's cache."""
    local = Path(name_or_path)
    if local.is_dir() and os.access(local, os.W_OK):
        return local / "exports"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "xpretrieval" / "exports" / name_or_path.replace("/", "--")


class _Runner:
    """An exported graph loaded by its runtime, on the CPU, with PyTorch's thread count."""

    def __init__(self, backend: Backend, graph: Path) -> None:
        self.backend, self.graph = backend, graph
        self._compiled: dict[bool, Any] = {}
        if backend is Backend.onnx:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            self._session = onnxruntime.InferenceSession(
                str(graph), options, providers=onnxruntime.get_available_providers()
            )
            self._inputs = [port.name for port in self._session.get_inputs()]

    def __call__(self, inputs: dict[str, np.ndarray], bf16: bool) -> np.ndarray:
        if self.backend is Backend.onnx:
            if bf16:
                raise ConfigError(
                    "precision=bf16: ONNX Runtime runs the exported graph in fp32 (or int8); "
                    "use precision=fp32, or model.backend=openvino for bf16"
                )
            return self._session.run(None, {name: inputs[name] for name in self._inputs})[0]
        if bf16 not in self._compiled:
            self._compiled[bf16] = _compile_openvino(self.graph, bf16)
        compiled = self._compiled[bf16]
        return compiled({port.any_name: inputs[port.any_name] for port in compiled.inputs})[0]


def _compile_openvino(graph: Path, bf16: bool) -> Any:
    """The IR compiled for the CPU in the precision asked: OpenVINO's CPU plugin would
    otherwise run bf16 wherever the CPU has it (AMX, AVX-512 bf16), even for an fp32 run."""
    import openvino

    settings = {
        "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
    }
    return openvino.Core().compile_model(str(graph), "CPU", settings)


def _bf16_asked() -> bool:
    """Whether the encoding runs under bf16 autocast (`precision=bf16`), as PyTorch would."""
    return any(
        torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16
        for device in ("cpu", "cuda")
    )
