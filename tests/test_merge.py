"""`merge`: checkpoints of one architecture averaged (uniform or weighted) into a normal
checkpoint that loads and evaluates; other architectures, bad weights and an occupied output
folder refused in one line, before anything is written."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import xpretrieval
from tests.conftest import ROOT, TINY_BEIR, make_tiny_bert, tiny_overrides
from xpretrieval.__main__ import main as cli_main
from xpretrieval.commands.evaluate import run_evaluate
from xpretrieval.commands.merge import MERGE_FILE, merge
from xpretrieval.core.errors import UserInputError
from xpretrieval.data.collection import Collection
from xpretrieval.models.dense import Dense
from xpretrieval.models.loading import config_for
from xpretrieval.models.splade import Splade
from xpretrieval.models.transformer import TransformerConfig, TransformerModel


def saved(config: TransformerConfig, folder: Path) -> Path:
    """The model `config` builds, saved into `folder` through the framework, as a checkpoint
    is."""
    config.build().save(folder)
    return folder


def dense(model_dir: Path, **settings) -> Dense:
    return Dense(name_or_path=str(model_dir), **settings)


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> tuple[Path, Path]:
    """Two Dense checkpoints of the tiny BERT architecture with different random weights."""
    root = tmp_path_factory.mktemp("merge")
    return tuple(
        saved(dense(make_tiny_bert(root / f"bert-{seed}", seed=seed)), root / f"checkpoint-{seed}")
        for seed in (0, 1)
    )


def weights_of(folder: Path) -> dict[str, torch.Tensor]:
    return xpretrieval.load(folder, device="cpu").state_dict()


def scores(folder: Path) -> torch.Tensor:
    """The model's scores of every fixture query against every fixture document."""
    model = xpretrieval.load(folder, device="cpu")
    collection = Collection.from_beir(TINY_BEIR, "test")
    with torch.no_grad():
        queries = model.encode_queries(list(collection.queries.values()))
        documents = model.encode_documents(list(collection.documents.values()))
        return model.score(queries, documents)


def test_a_uniform_merge_is_the_elementwise_mean(two, tmp_path):
    merged = merge(two, tmp_path / "soup")
    first, second, result = weights_of(two[0]), weights_of(two[1]), weights_of(merged)
    assert result.keys() == first.keys()
    for key, value in result.items():
        assert value.dtype == first[key].dtype
        torch.testing.assert_close(value, (first[key] + second[key]) / 2, rtol=0, atol=1e-7)
    provenance = json.loads((merged / MERGE_FILE).read_text())
    assert [source["weight"] for source in provenance["sources"]] == [0.5, 0.5]
    assert [source["checkpoint"] for source in provenance["sources"]] == [str(p) for p in two]
    assert not (merged / "metrics.json").exists()  # never measured: no metrics to claim


def test_weights_are_normalised_and_1_0_reproduces_the_first_checkpoint(two, tmp_path):
    alone = merge(two, tmp_path / "first", weights=[1, 0])
    assert torch.equal(scores(alone), scores(two[0]))
    first, second = weights_of(two[0]), weights_of(two[1])
    for key, value in weights_of(alone).items():
        assert torch.equal(value, first[key])
    weighted = merge(two, tmp_path / "weighted", weights=[3, 1])  # 0.75 and 0.25
    for key, value in weights_of(weighted).items():
        torch.testing.assert_close(value, 0.75 * first[key] + 0.25 * second[key])
    provenance = json.loads((weighted / MERGE_FILE).read_text())
    assert [s["weight"] for s in provenance["sources"]] == [0.75, 0.25]
    assert provenance["weights_given"] == [3, 1]


def test_a_trained_run_merged_with_its_base_loads_and_evaluates(tiny_model_dir, tmp_path):
    """LM-Cocktail's recipe: the fine-tuned model (a run directory: its measured checkpoint)
    averaged with the model it started from."""
    shrink = tiny_overrides(tiny_model_dir)
    xpretrieval.train_from_overrides([*shrink, "trainer.max_steps=2"], tmp_path / "run")
    measured = json.loads((tmp_path / "run" / "metrics.json").read_text())["checkpoint"]
    trained = config_for(measured)
    base = saved(replace(trained, name_or_path=str(tiny_model_dir)), tmp_path / "base")
    merged = merge([tmp_path / "run", base], tmp_path / "merged", weights=[0.5, 0.5])
    provenance = json.loads((merged / MERGE_FILE).read_text())
    assert provenance["sources"][0]["checkpoint"] == str(measured)
    assert type(xpretrieval.load(merged, device="cpu")).__name__ == "DenseEncoder"
    experiment = xpretrieval.configure([*shrink, f"model.name_or_path={merged}"], "evaluate")
    aggregate = run_evaluate(experiment, tmp_path / "evaluated")
    assert 0 <= aggregate["nDCG@10"] <= 1


def test_lora_adapters_are_folded_into_their_weights_before_averaging(two, tmp_path):
    base = two[0].parent / "bert-0"  # the plain transformer checkpoint[0] was saved from
    adapted = dense(base, lora_rank=2, lora_dropout=0.0).build()
    with torch.no_grad():  # adapters start as a no-op (B = 0): give them a value
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    adapted.save(tmp_path / "adapters")
    adapted.merge_lora()
    folded = adapted.state_dict()
    merged = merge([tmp_path / "adapters", two[1]], tmp_path / "merged")
    other = weights_of(two[1])
    result = xpretrieval.load(merged, device="cpu")
    assert result.config.lora_rank == 0
    for key, value in result.state_dict().items():
        torch.testing.assert_close(value, (folded[key] + other[key]) / 2)


def test_other_architectures_are_refused_naming_the_checkpoint(two, masked_lm_dir, tmp_path):
    splade = saved(Splade(name_or_path=str(masked_lm_dir)), tmp_path / "splade")
    cls = saved(dense(two[1].parent / "bert-1", pooling="cls"), tmp_path / "cls")
    binary = saved(dense(two[1].parent / "bert-1", quantization="binary"), tmp_path / "binary")
    wider_bert = tmp_path / "wider-bert"
    from transformers import AutoTokenizer, BertConfig, BertModel

    BertModel(BertConfig.from_pretrained(two[0], hidden_size=48)).save_pretrained(wider_bert)
    AutoTokenizer.from_pretrained(two[0]).save_pretrained(wider_bert)
    wider = saved(dense(wider_bert), tmp_path / "wider")
    renamed = tmp_path / "renamed"  # same shapes, one token spelled differently
    shutil.copytree(two[1], renamed)
    tokenizer = json.loads((renamed / "tokenizer.json").read_text())
    vocabulary = tokenizer["model"]["vocab"]
    vocabulary["zzzz"] = vocabulary.pop("honey")
    (renamed / "tokenizer.json").write_text(json.dumps(tokenizer))
    expected = {
        splade: "a Splade model, but .* is a Dense model",
        cls: "saved with pooling=cls, but .* with pooling=mean",
        binary: "saved with quantization=binary, but .* with quantization=none",
        wider: "its transformer config has hidden_size=48, .* 32",
        renamed: "its tokenizer's vocabulary",
    }
    for other, message in expected.items():
        with pytest.raises(UserInputError, match=f"^{other}: {message}"):
            merge([two[0], other], tmp_path / "never")
    with pytest.raises(UserInputError, match=f"^{tmp_path / 'missing'}: no such folder"):
        merge([two[0], tmp_path / "missing"], tmp_path / "never")
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    "weights, message",
    [
        ([1.0], "1 weights for 2 checkpoints"),
        ([1.0, -0.5], r"weights\[1\] must be >= 0, got -0.5"),
        ([math.nan, 1.0], r"weights\[0\] must be >= 0, got nan"),
        ([math.inf, 1.0], r"weights\[0\] must be >= 0, got inf"),
        ([0.0, 0.0], "they sum to 0"),
    ],
)
def test_bad_weights_are_refused_before_any_model_loads(weights, message, tmp_path):
    missing = [tmp_path / "not-loaded-a", tmp_path / "not-loaded-b"]  # refused before reading
    with pytest.raises(UserInputError, match=message):
        merge(missing, tmp_path / "never", weights=weights)
    with pytest.raises(UserInputError, match="at least two checkpoints"):
        merge(missing[:1], tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_an_occupied_output_is_refused_and_a_failed_save_leaves_nothing(two, tmp_path, monkeypatch):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match=f"--output {occupied}: exists and is not an empty"):
        merge(two, occupied)
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (merge(two, empty) / MERGE_FILE).is_file()  # an empty folder is taken

    def failing_save(self, path):
        (Path(path) / "config.json").write_text("{")
        raise OSError("disk gone")

    monkeypatch.setattr(TransformerModel, "save", failing_save)
    with pytest.raises(OSError, match="disk gone"):
        merge(two, tmp_path / "failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "occupied"]  # no temp folder


def test_the_cli_merges(two, tmp_path):
    output = tmp_path / "soup"
    command = [sys.executable, "-m", "xpretrieval", "merge", *map(str, two)]
    command += ["--weights", "0.7", "0.3", "--output", str(output)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"Merged model: {output}" in done.stdout
    provenance = json.loads((output / MERGE_FILE).read_text())
    assert [s["weight"] for s in provenance["sources"]] == pytest.approx([0.7, 0.3])


def test_the_cli_refuses_in_one_line(two, tmp_path, monkeypatch, capsys):
    never = tmp_path / "never"
    args = ["merge", *map(str, two), "--weights", "1", "--output", str(never)]
    monkeypatch.setattr(sys, "argv", ["xpretrieval", *args])
    with pytest.raises(SystemExit) as exit:
        cli_main()
    assert exit.value.code == 2 and not never.exists()
    expected = "error: weights: 1 weights for 2 checkpoints; give one per checkpoint"
    assert capsys.readouterr().err.strip() == expected
