"""Encoding through exported graphs (`model.backend=onnx|openvino`): the same representations
as PyTorch (fp32 to 1e-5 with ONNX Runtime, 1e-3 with OpenVINO), int8 graphs close to them,
one export per checkpoint and side kept on disk, and the settings refused where they cannot
hold."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from omegaconf.errors import ValidationError

import xpretrieval
from tests.conftest import tiny_overrides
from tests.inprocess import run
from xpretrieval.core.errors import ConfigError
from xpretrieval.models import Dense
from xpretrieval.models import backends as backends_module
from xpretrieval.models.colbert import ColBERT
from xpretrieval.models.cross_encoder import CrossEncoder
from xpretrieval.models.inference_free import InferenceFreeSplade
from xpretrieval.models.splade import Splade

pytest.importorskip("onnxruntime", reason="the onnx backend needs onnxruntime")
pytest.importorskip("openvino", reason="the openvino backend needs openvino")

TEXTS = [
    "honey bees pollinate flowering plants",
    "bees",
    "comets are icy bodies that orbit the sun",
    "bread rises because yeast makes gas",
] * 3
# fp32 agreement: ONNX Runtime runs the same kernels' maths; OpenVINO's CPU plugin fuses more
FP32_TOLERANCE = {"onnx": 1e-5, "openvino": 1e-3}


@pytest.fixture
def dense_dir(tiny_model_dir, tmp_path):
    """A private copy: exports are written beside the checkpoint."""
    return shutil.copytree(tiny_model_dir, tmp_path / "dense")


@pytest.fixture
def mlm_dir(masked_lm_dir, tmp_path):
    return shutil.copytree(masked_lm_dir, tmp_path / "mlm")


def encodings(config) -> tuple[torch.Tensor, torch.Tensor]:
    model = config.build().eval()
    return model.encode_queries(TEXTS[:5]), model.encode_documents(TEXTS)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
@pytest.mark.parametrize("kind", ["dense", "splade", "inference_free_splade"])
def test_fp32_graphs_encode_as_pytorch_does(kind, backend, dense_dir, mlm_dir):
    config_class = {"dense": Dense, "splade": Splade, "inference_free_splade": InferenceFreeSplade}
    path = str(dense_dir if kind == "dense" else mlm_dir)
    expected = encodings(config_class[kind](name_or_path=path))
    exported = encodings(config_class[kind](name_or_path=path, backend=backend))
    for ours, reference in zip(exported, expected, strict=True):
        assert ours.shape == reference.shape and reference.abs().max() > 0.01
        assert torch.allclose(ours, reference, atol=FP32_TOLERANCE[backend], rtol=0)
    if kind == "splade":  # the same terms are active: the graph prunes as the model does
        assert torch.equal(exported[1] > 0, expected[1] > 0)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
@pytest.mark.parametrize("quantization", ["dynamic", "static"])
def test_int8_graphs_stay_close_to_pytorch(backend, quantization, dense_dir):
    expected = encodings(Dense(name_or_path=str(dense_dir)))
    config = Dense(name_or_path=str(dense_dir), backend=backend, backend_quantization=quantization)
    for ours, reference in zip(encodings(config), expected, strict=True):
        error = (ours - reference).abs().max().item()
        assert 1e-6 < error < 0.05, f"int8 error {error}"  # quantised, and still close
        cosine = torch.nn.functional.cosine_similarity(ours, reference)
        assert cosine.min() > 0.99


def test_the_export_is_kept_beside_the_checkpoint_and_reused(dense_dir, monkeypatch):
    config = Dense(name_or_path=str(dense_dir), backend="onnx")
    first = encodings(config)
    folders = sorted(path.name for path in (dense_dir / "exports").iterdir())
    assert [name.split("-")[:3] for name in folders] == [
        ["document", "onnx", "none"],
        ["query", "onnx", "none"],
    ]

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setitem(backends_module.EXPORTERS, backends_module.Backend.onnx, no_export)
    again = encodings(config)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_onnx_graphs_hold_plain_attention_and_the_model_keeps_its_own(dense_dir):
    """Exported with eager attention (SDPA's export guards every score with IsNaN and Where,
    separate passes in ONNX Runtime); the PyTorch model's attention is left as it was."""
    import onnx

    model = Dense(name_or_path=str(dense_dir), backend="onnx").build().eval()
    encoder = model.side_encoder(False)
    before = encoder.config._attn_implementation
    model.encode_documents(TEXTS)
    (graph,) = (dense_dir / "exports").glob("document-onnx-*/*.onnx")
    operators = {node.op_type for node in onnx.load(str(graph)).graph.node}
    assert "Softmax" in operators and "IsNaN" not in operators
    assert encoder.config._attn_implementation == before != "eager"


def test_new_weights_get_a_new_export(dense_dir, tmp_path):
    model = Dense(name_or_path=str(dense_dir), backend="onnx").build().eval()
    before = model.encode_documents(TEXTS[:2])
    with torch.no_grad():
        model.query_encoder.embeddings.word_embeddings.weight.mul_(2)
    model.save(tmp_path / "changed")  # the same settings, other weights
    changed = Dense(name_or_path=str(tmp_path / "changed"), backend="onnx").build().eval()
    assert not torch.allclose(changed.encode_documents(TEXTS[:2]), before)


def test_static_calibration_samples_the_texts_encoded(dense_dir):
    model = Dense(
        name_or_path=str(dense_dir),
        backend="onnx",
        backend_quantization="static",
        backend_calibration_texts=5,
    ).build()
    side = backends_module.BackendSide(model, is_query=False)
    side.prepare(TEXTS)
    assert sum(len(batch["input_ids"]) for batch in side.calibration) == 5


def test_load_takes_a_backend(dense_dir):
    model = xpretrieval.load(dense_dir, device="cpu", backend="openvino")
    assert model.config.backend.value == "openvino" and model.encode_queries(["bees"]).shape == (
        1,
        32,
    )
    with pytest.raises(ConfigError, match="load\\(backend='tensorrt'"):
        xpretrieval.load(dense_dir, device="cpu", backend="tensorrt")


def test_a_saved_model_does_not_record_its_backend(dense_dir, tmp_path):
    model = Dense(name_or_path=str(dense_dir), backend="openvino").build()
    model.save(tmp_path / "saved")
    text = (tmp_path / "saved" / "xpretrieval_model.yaml").read_text()
    assert "backend" not in text
    assert xpretrieval.load(tmp_path / "saved").config.backend.value == "torch"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: ColBERT(name_or_path=p, backend="onnx"), "dense and SPLADE"),
        (lambda p: CrossEncoder(name_or_path=p, backend="openvino"), "dense and SPLADE"),
        (lambda p: Dense(name_or_path=p, backend_quantization="static"), "set model.backend"),
        (lambda p: Dense(name_or_path=p, backend="tensorrt"), "tensorrt"),
        (lambda p: Dense(name_or_path=p, backend="onnx", compile=True), "compile: .* Set one"),
        (
            lambda p: Dense(name_or_path=p, backend="onnx", backend_calibration_texts=0),
            "backend_calibration_texts",
        ),
    ],
)
def test_settings_that_cannot_hold_are_refused(make, message, dense_dir):
    with pytest.raises((ValueError, ValidationError, ConfigError), match=message):
        make(str(dense_dir))


def test_training_and_onnx_bf16_are_refused_before_any_work(tiny_model_dir):
    given = [*tiny_overrides(tiny_model_dir), "model.backend=onnx"]
    with pytest.raises(ConfigError, match="training runs on torch"):
        xpretrieval.configure(given, command="train")
    with pytest.raises(ConfigError, match="precision=bf16"):
        xpretrieval.configure([*given, "precision=bf16"], command="evaluate")
    xpretrieval.configure([*given, "precision=fp32"], command="evaluate")


def test_onnx_is_refused_at_start_where_precision_auto_means_bf16(tiny_model_dir, monkeypatch):
    """On a GPU with bf16, precision=auto encodes under bf16 autocast, which the ONNX graph
    cannot run: refused before any work, not at the first batch."""
    given = [*tiny_overrides(tiny_model_dir), "model.backend=onnx", "precision=auto"]
    xpretrieval.configure(given, command="evaluate")  # on a CPU, auto is fp32
    given = [*given, "device=cuda"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    with pytest.raises(ConfigError, match=r"precision=auto \(bf16 on this GPU\)"):
        xpretrieval.configure(given, command="evaluate")


def test_evaluate_with_an_exported_graph_measures_what_pytorch_does(dense_dir, tmp_path):
    given = tiny_overrides(dense_dir)
    run("evaluate", given, tmp_path / "torch")
    run("evaluate", [*given, "model.backend=onnx"], tmp_path / "onnx")
    expected, exported = (
        json.loads((tmp_path / name / "metrics.json").read_text())["aggregate"]
        for name in ("torch", "onnx")
    )
    assert exported == pytest.approx(expected, abs=1e-6) and expected["nDCG@10"] > 0
