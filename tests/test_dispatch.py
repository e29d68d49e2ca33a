"""From the command line to the config: overrides before Hydra's flags, unset values named."""

from __future__ import annotations

import pytest

from xpretrieval.commands.dispatch import launch_overrides, split_hydra_flags


def test_flags_and_their_values_are_told_from_overrides():
    args = ["a=1", "--cfg", "job", "b=-2", "-m", "~c", "--package", "_global_"]
    overrides, flags = split_hydra_flags(args)
    assert overrides == ["a=1", "b=-2", "~c"]
    assert flags == ["--cfg", "job", "-m", "--package", "_global_"]


def test_a_resume_showing_its_config_keeps_the_overrides_in_one_block(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- +experiment=splade\n- trainer.max_steps=3\n")
    (run / "config.yaml").write_text("seed: 0\n")
    args = launch_overrides("train", [f"resume={run}", "--cfg", "job", "trainer.max_steps=5"])
    assert args == [
        "+experiment=splade",
        f"resume={run}",
        "trainer.max_steps=5",
        f"hydra.run.dir={run}",
        "--cfg",
        "job",
    ]


def test_a_mandatory_value_left_unset_is_named_before_anything_is_built():
    from xpretrieval import configure
    from xpretrieval.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^model.name_or_path: no value given"):
        configure(["+experiment=llm_lora"])  # a causal LM must be named: no default checkpoint
