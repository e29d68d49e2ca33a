"""Numbers a run must never write: a setting that is nan or infinite is refused when the config
is built (CLI and Python alike); weights or scores that training made non-finite stop the run
with one line naming the step, before a checkpoint, a run file or metrics are written."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hydra.errors import HydraException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf.errors import OmegaConfBaseException

import xpretrieval
from tests.conftest import tiny_overrides
from xpretrieval.commands.train import run_train
from xpretrieval.core.errors import ConfigError, NonFiniteError
from xpretrieval.data.run import write_trec_run

# float settings of the default experiment (dense, InfoNCE, AdamW) and of its groups' presets
FLOAT_SETTINGS = [
    "optimizer.lr",
    "optimizer.weight_decay",
    "optimizer.warmup_ratio",
    "trainer.grad_clip",
    "trainer.epochs",
    "trainer.checkpoint_minutes",
    "losses.rank.scale",
    "losses.rank.weight",
    "losses.rank.label_smoothing",
]
INT_SETTINGS = ["trainer.max_steps", "batcher.batch_size", "evaluation.top_k", "seed"]
VALUES = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "0", "-1", "1e308", "-1e308", "1e-320"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(FLOAT_SETTINGS + INT_SETTINGS), value=VALUES)
def test_any_numeric_setting_is_built_finite_or_refused_with_its_key(key, value):
    try:
        experiment = xpretrieval.configure([f"{key}={value}"])
    except ConfigError as error:  # refused: one line that names the setting
        assert key.rsplit(".", 1)[-1] in str(error) and "\n" not in str(error)
        return
    except (HydraException, OmegaConfBaseException) as error:  # a type Hydra itself refuses
        assert key in str(error)
        return
    built = experiment
    for part in key.split("."):
        built = built[part] if isinstance(built, dict) else getattr(built, part)
    assert built is None or math.isfinite(built)


@pytest.mark.parametrize(
    "override", ["optimizer.lr=inf", "trainer.grad_clip=nan", "losses.rank.weight=-inf"]
)
def test_the_cases_reported_are_refused_when_configured(override):
    with pytest.raises(ConfigError, match=override.split("=")[0].rsplit(".", 1)[-1]):
        xpretrieval.configure([override])


def test_a_non_finite_setting_built_in_python_is_refused_by_train(tiny_model_dir, tmp_path):
    experiment = xpretrieval.configure(tiny_overrides(tiny_model_dir))
    model = replace(experiment.model, config_overrides={"layer_norm_eps": float("nan")})
    with pytest.raises(ConfigError, match="model.config_overrides.layer_norm_eps must be a finite"):
        xpretrieval.train(replace(experiment, model=model), tmp_path / "run")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_weights_spoilt_by_an_update_stop_the_run_naming_the_step(tiny_model_dir, tmp_path):
    """An enormous weight decay overflows the weights after a finite loss: the run stops with
    one line before any checkpoint, run file or metrics is written."""
    overrides = [*tiny_overrides(tiny_model_dir), "optimizer.weight_decay=1e38", "optimizer.lr=1"]
    experiment = xpretrieval.configure([*overrides, "trainer.max_steps=2"])
    with pytest.raises(NonFiniteError, match=r"step \d") as error:
        run_train(experiment, tmp_path)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
    assert not (tmp_path / "run.trec").exists() and not (tmp_path / "metrics.json").exists()


def test_a_run_with_a_non_finite_score_is_not_written(tmp_path):
    with pytest.raises(NonFiniteError, match="query q1, document d2 scored nan"):
        write_trec_run(tmp_path / "run.trec", {"q1": [("d1", 1.0), ("d2", float("nan"))]})
    assert not (tmp_path / "run.trec").exists()
