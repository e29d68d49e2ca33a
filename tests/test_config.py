"""Config composition: every preset composes and converts; bad input fails naming the key."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from tests.conftest import CONF_DIR, ROOT, TINY_BEIR, compose_config
from xpretrieval import configure
from xpretrieval.commands.experiment import ExperimentConfig, load_experiment
from xpretrieval.core.errors import ConfigError
from xpretrieval.losses import BatchScores, InfoNCE
from xpretrieval.models import Dense

# presets whose mandatory values (???) a user must give on the command line, or that need
# a matching component (a regulariser needs a sparse model)
REQUIRED = {
    "dataset/beir_folder": [f"dataset.train.beir_folder={TINY_BEIR}"],
    "loss/flops": ["model=splade"],
    "loss/l1": ["model=splade"],
    "model/cross_encoder": ["evaluation.rerank.top_k=100"],
    "sampler/distillation": ["sampler.teacher_run=teacher.trec"],
    "experiment/distill_margin_mse": [f"teacher.model.name_or_path={ROOT}"],  # an existing folder
    "experiment/llm_lora": [f"model.name_or_path={ROOT}"],
    "model/llm": [f"model.name_or_path={ROOT}"],
    "model/llm_reranker": [f"model.name_or_path={ROOT}"],
    "experiment/llm_rerank": [f"model.name_or_path={ROOT}"],
    "loss/margin_mse": ["sampler=distillation", "sampler.teacher_run=teacher.trec"],
    "loss/kl_distillation": ["sampler=distillation", "sampler.teacher_run=teacher.trec"],
    "loss/bce": ["sampler=pointwise", "trainer=pointwise"],
    "loss/mse": ["sampler=pointwise", "trainer=pointwise"],
    "sampler/pointwise": ["trainer=pointwise", "loss@losses.rank=bce"],
    "trainer/pointwise": ["sampler=pointwise", "loss@losses.rank=bce"],
}


def presets() -> list[str]:
    return sorted(f"{path.parent.name}/{path.stem}" for path in CONF_DIR.glob("*/*.yaml"))


def test_every_group_has_presets():
    groups = {preset.split("/")[0] for preset in presets()}
    expected = {
        "dataset",
        "model",
        "sampler",
        "batcher",
        "loss",
        "optimizer",
        "trainer",
        "experiment",
    }
    assert expected <= groups


@pytest.mark.parametrize("preset", presets())
def test_every_preset_composes_and_converts(preset):
    group, name = preset.split("/")
    choice = {"experiment": f"+experiment={name}", "loss": f"loss@losses.rank={name}"}.get(
        group, f"{group}={name}"
    )
    overrides = [choice, *REQUIRED.get(preset, [])]
    if group == "experiment":  # a whole experiment: its components fit together too
        experiment = configure(overrides)
    else:
        experiment = load_experiment(compose_config(*overrides))
    assert isinstance(experiment, ExperimentConfig)


def test_softmax_cross_entropy_preset_ranks_each_record_among_its_own_candidates():
    loss = load_experiment(compose_config("loss@losses.rank=softmax_cross_entropy")).losses["rank"]
    scores = torch.tensor([[3.0, 0.0, 1.0], [0.0, 2.0, 2.0]], dtype=torch.float64)
    batch = BatchScores(scores, targets=torch.tensor([0, 1]), owners=torch.tensor([0, 1, 0]))
    # query 0 chooses between its columns 0 and 2 (raw scores 3 and 1); query 1 has only column 1
    expected = -math.log(math.exp(3) / (math.exp(3) + math.exp(1))) / 2
    assert loss(batch).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_each_command_root_composes_and_names_its_job(command):
    cfg = compose_config(config_name=command, return_hydra_config=True)
    assert cfg.hydra.job.name == command
    assert isinstance(load_experiment(compose_config(config_name=command)), ExperimentConfig)


def test_defaults_build_typed_components():
    experiment = load_experiment(compose_config())
    assert isinstance(experiment.model, Dense)
    assert list(experiment.losses) == ["rank"]
    assert isinstance(experiment.losses["rank"], InfoNCE)
    assert experiment.model.pooling is None  # as the checkpoint was saved, else mean
    assert experiment.dataset.test.ir_datasets == "beir/scifact/test"


def test_command_line_overrides_reach_the_objects():
    experiment = load_experiment(
        compose_config("trainer.max_steps=200", "optimizer.lr=3e-5", "model.pooling=cls")
    )
    assert experiment.trainer.max_steps == 200
    assert experiment.optimizer.lr == pytest.approx(3e-5)
    assert experiment.model.pooling.value == "cls"


def test_beir_folder_preset_uses_one_folder_for_both_splits():
    experiment = load_experiment(
        compose_config("dataset=beir_folder", *REQUIRED["dataset/beir_folder"])
    )
    assert experiment.dataset.test.beir_folder == str(TINY_BEIR)
    assert (experiment.dataset.train.split, experiment.dataset.test.split) == ("train", "test")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("losses.rank.scale=-1", r"^losses\.rank\.scale must be > 0, got -1"),
        ("batcher.batch_size=0", r"^batcher\.batch_size must be >= 1, got 0"),
        ("optimizer.lr=0", r"^optimizer\.lr must be > 0"),
        ("trainer.max_steps=0", r"^trainer\.max_steps must be >= 1"),
        ("model.doc_max_length=-5", r"^model\.doc_max_length must be > 0"),
        ("evaluation.metrics=[nDGC@10]", r"^evaluation\.metrics: 'nDGC@10' is not an ir-measures"),
        ("dataset.test.beir_folder=/x", r"^dataset\.test\.set exactly one of ir_datasets"),
        (
            "losses.rank.symmetric=true losses.rank.in_batch_negatives=false",
            r"^losses\.rank\.symmetric=true needs",
        ),
    ],
)
def test_bad_values_fail_naming_the_key(override, message):
    cfg = compose_config(*override.split())
    with pytest.raises(ConfigError, match=message):
        load_experiment(cfg)


def test_unknown_key_is_rejected_at_composition():
    with pytest.raises(ConfigCompositionException) as info:
        compose_config("losses.rank.sclae=1")
    assert "Key 'sclae' not in 'InfoNCE'" in str(info.value.__cause__)
    assert "full_key: losses.rank.sclae" in str(info.value.__cause__)


def test_wrong_type_is_rejected_at_composition():
    with pytest.raises(ConfigCompositionException) as info:
        compose_config("trainer.max_steps=many")
    assert isinstance(info.value.__cause__, ValidationError)
    assert "full_key: trainer.max_steps" in str(info.value.__cause__)


def test_unknown_enum_value_lists_the_choices():
    with pytest.raises(ConfigCompositionException) as info:
        compose_config("model.pooling=median")
    assert "expected one of [cls, mean, max, last]" in str(info.value.__cause__)


def test_unknown_group_option_is_rejected():
    with pytest.raises(MissingConfigException, match="loss/hingee"):
        compose_config("loss@losses.rank=hingee")


def test_an_experiment_without_loss_terms_is_refused(tmp_path):
    from xpretrieval.commands.train import run_train

    with pytest.raises(ConfigError, match="losses is empty"):
        run_train(load_experiment(compose_config("~loss@losses.rank")), tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["+loss@losses.flops=flops"],
            "losses.flops: Flops reads vocabulary term weights .* which a Dense model",
        ),
        (["losses.rank.part=dense"], "losses.rank.part=dense: a Dense model's score has no"),
        (
            ["+experiment=sparse_embed", "losses.sparse.part=lexical"],
            r"losses.sparse.part=lexical: .* \(parts: sparse, dense\)",
        ),
    ],
)
def test_a_loss_the_model_cannot_feed_is_refused_before_loading(overrides, message):
    with pytest.raises(ConfigError, match=message):
        configure(overrides)


def test_evaluate_needs_only_a_test_split(tiny_model_dir, tmp_path):
    from xpretrieval.commands.evaluate import run_evaluate

    overrides = [
        "dataset=beir_folder",
        f"dataset.test.beir_folder={TINY_BEIR}",  # no dataset.train.beir_folder
        f"model.name_or_path={tiny_model_dir}",
        "model.doc_max_length=32",
        "evaluation.top_k=10",
        "device=cpu",
    ]
    assert 0 <= run_evaluate(configure(overrides, "evaluate"), tmp_path)["nDCG@10"] <= 1
    with pytest.raises(ConfigError, match="dataset.train"):  # training still needs its split
        load_experiment(
            compose_config("dataset=beir_folder", f"dataset.test.beir_folder={TINY_BEIR}")
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (  # trained for minutes, then crashed in the index before this check
            ["+experiment=sparse_embed", "index=inverted"],
            r"index: Inverted indexes representations that are vocabulary term weights "
            r"\(SparseBiEncoder\), which a SparseEmbed model does not have",
        ),
        (["index=inverted"], "index: Inverted indexes .* which a Dense model does not have"),
        (["index=seismic"], "index: Seismic indexes .* which a Dense model does not have"),
        (
            [
                "+experiment=cross_encoder_rerank",
                "validation.every=5",
                "validation.held_out_queries=2",
            ],
            "validation.every: validation searches the collection, which a CrossEncoder model",
        ),
        (
            [
                "sampler=distillation",
                "loss@losses.rank=margin_mse",
                "+model@teacher.model=bm25",
            ],
            "teacher.model: a Bm25 model ranks collections but does not score given candidates",
        ),
        (["model=bm25"], "model: a Bm25 model has nothing to train"),
    ],
)
def test_a_combination_that_cannot_work_is_refused_at_start_up(overrides, message):
    with pytest.raises(ConfigError, match=message):
        configure(overrides)


def test_the_same_combination_is_accepted_where_it_fits():
    assert configure(["+experiment=splade", "index=inverted"]).index.serves.__name__ == (
        "SparseBiEncoder"
    )
    configure(["model=bm25"], "evaluate")  # BM25 ranks by itself: no index is needed
    configure(["+experiment=cross_encoder_rerank"], "evaluate")


def component_presets() -> list[Path]:
    """Every preset of a component group (experiments and datasets compose several)."""
    return [p for p in sorted(CONF_DIR.glob("*/*.yaml")) if p.parent.name not in ("experiment",)]


@pytest.mark.parametrize("path", component_presets(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_preset_holds_only_what_differs_from_its_dataclass(path):
    """The dataclass's defaults are the component's defaults: a preset that repeated one would
    be a second source, free to drift from it (as Flops() and Dense() once did)."""
    from hydra.core.config_store import ConfigStore

    raw = OmegaConf.load(path)
    schema = next(d for d in raw.defaults if isinstance(d, str) and d.startswith("/schema/"))
    group, name = schema.split("@")[0].split("/")[2:4]
    component = OmegaConf.get_type(
        ConfigStore.instance().repo["schema"][group][f"{name}.yaml"].node
    )
    fields = {k: v for k, v in OmegaConf.to_container(raw).items() if k != "defaults"}
    defaults = OmegaConf.to_container(OmegaConf.structured(component))
    repeated = [key for key, value in fields.items() if defaults.get(key) == value]
    assert not repeated, f"{path.name} repeats the defaults of {component.__name__}: {repeated}"
    overrides = _choose(group, path.stem)
    own = any(o.startswith(f"{group}.") for o in overrides)  # a mandatory value given
    if not own:  # built in Python with the preset's fields, it is the same component
        preset = load_experiment(compose_config(*overrides))
        built = preset.losses["rank"] if group == "loss" else getattr(preset, group)
        assert built == OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(component), fields)
        )


def _choose(group: str, name: str) -> list[str]:
    """The overrides that select preset `name` of `group` (a loss as the ranking term)."""
    if group == "loss":
        return [f"loss@losses.rank={name}", *REQUIRED.get(f"loss/{name}", [])]
    return [f"{group}={name}", *REQUIRED.get(f"{group}/{name}", [])]


def test_components_built_in_python_equal_their_presets():
    from xpretrieval.losses import Flops
    from xpretrieval.models import Dense

    assert load_experiment(compose_config("+loss@losses.flops=flops")).losses["flops"] == Flops()
    model = load_experiment(compose_config()).model
    assert model == Dense(name_or_path="sentence-transformers/all-MiniLM-L6-v2")


DATASET_PRESETS = sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml"))


@pytest.mark.parametrize("name", [n for n in DATASET_PRESETS if n != "beir_folder"])
def test_every_dataset_preset_names_splits_ir_datasets_serves(name):
    """Composed and built without loading anything; every id is one ir-datasets registers
    (a split of Hub training examples names none)."""
    import ir_datasets

    experiment = load_experiment(compose_config(f"dataset={name}", config_name="evaluate"))
    splits = [experiment.dataset.train, experiment.dataset.dev, experiment.dataset.test]
    ids = [split.ir_datasets for split in splits if split is not None and not split.hf_dataset]
    assert ids and all(i in ir_datasets.registry for i in ids), ids
