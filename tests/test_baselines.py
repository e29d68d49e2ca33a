"""The recorded baselines' fast checks: few steps on a 400-document SciFact test, pinned
values, so that a change shifting a baseline fails here (the full runs: experiments/). They
are marked `baseline`: `make test-baselines` (and so CI) runs every one, `make test` none."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, tiny_overrides
from xpretrieval.commands.baselines import (
    BASELINE_FILE,
    FAST_CHECK_NUMERICS,
    NATIVE,
    Check,
    Outcome,
    load_baseline,
    numerics_environment,
    run_check,
)
from xpretrieval.core.errors import ConfigError

BASELINES = sorted(path.parent for path in (ROOT / "experiments").glob(f"*/{BASELINE_FILE}"))


def test_every_baseline_file_is_valid_and_has_a_readme():
    assert {path.name for path in BASELINES} >= {
        "bm25_scifact",
        "minilm_zero_shot_scifact",
        "dense_scifact",
    }
    for folder in BASELINES:
        load_baseline(folder)
        assert (folder / "README.md").is_file(), folder


@pytest.mark.baseline
@pytest.mark.shared_data
@pytest.mark.parametrize("folder", BASELINES, ids=[folder.name for folder in BASELINES])
def test_fast_check_reproduces_its_pinned_values(folder: Path, tmp_path):
    outcome = run_check(load_baseline(folder).fast, tmp_path, FAST_CHECK_NUMERICS)
    assert not outcome.failures


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="the settings are x86-64's"
)
def test_portable_numerics_reach_every_kernel_library():
    """Each library reads its own variable, and a misspelt one is silently ignored: a child
    process with the fast checks' numerics reports AVX2 from PyTorch, NumPy, OpenBLAS and faiss
    and one thread (oneMKL's branch and oneDNN's limit are not queryable)."""
    probe = (
        "import json, faiss, numpy, torch, threadpoolctl;"
        "from numpy._core._multiarray_umath import __cpu_features__ as features;"
        "blas = [i['architecture'] for i in threadpoolctl.threadpool_info()"
        " if i['internal_api'] == 'openblas'];"
        "print(json.dumps([torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(),"
        " features.get('X86_V4', False), blas,"
        " faiss.SIMDConfig.get_dispatched_level() == faiss.SIMDLevel_AVX2]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=numerics_environment(FAST_CHECK_NUMERICS),
        capture_output=True,
        text=True,
        check=True,
    )
    capability, threads, numpy_avx512, blas, faiss_avx2 = json.loads(result.stdout)
    assert (capability, threads, numpy_avx512, faiss_avx2) == ("AVX2", 1, False, True)
    assert blas and set(blas) == {"Haswell"}


def test_native_numerics_drop_the_portable_settings_a_process_inherited(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    native = numerics_environment(NATIVE)
    assert "ATEN_CPU_CAPABILITY" not in native and "OMP_NUM_THREADS" not in native
    assert native["HF_HUB_OFFLINE"] == "1"  # the rest of the environment passes through
    assert numerics_environment(FAST_CHECK_NUMERICS)["OMP_NUM_THREADS"] == "1"


def test_unknown_numerics_are_refused_before_any_run(tmp_path):
    check = Check(command=["evaluate", "model=bm25"], expected={"nDCG@10": 0.0}, tolerance=0.0)
    with pytest.raises(ConfigError, match="numerics must be one of .*'portable'.*got 'avx2'"):
        run_check(check, tmp_path, "avx2")
    assert not any(tmp_path.iterdir())


def test_a_check_builds_on_its_before_runs(tiny_model_dir, tmp_path):
    shrink = tiny_overrides(tiny_model_dir)
    evaluate = [o for o in shrink if not o.startswith("model.name_or_path=")]
    check = Check(
        before={"trained": ["train", *shrink]},
        command=["evaluate", *evaluate, "model.name_or_path={trained}/checkpoints/step-0000006"],
        expected={"nDCG@10": -1.0},  # unreachable: the failure reports what was measured
        tolerance=0.0,
    )
    outcome = run_check(check, tmp_path, FAST_CHECK_NUMERICS)
    # the evaluated checkpoint is the trained run's: the same metrics as its own evaluation
    own = json.loads((tmp_path / "trained" / "metrics.json").read_text())["aggregate"]
    assert outcome.measured == pytest.approx(own)
    assert outcome.failures == [f"nDCG@10: measured {own['nDCG@10']:.4f}, expected -1.0000 +/- 0.0"]


def test_an_outcome_outside_the_tolerance_fails():
    outcome = Outcome({"nDCG@10": 0.70}, {"nDCG@10": 0.72, "R@100": 0.9}, tolerance=0.01)
    assert outcome.failures == [
        "nDCG@10: measured 0.7000, expected 0.7200 +/- 0.01",
        "R@100: measured nan, expected 0.9000 +/- 0.01",
    ]


def test_a_malformed_baseline_file_names_itself(tmp_path):
    (tmp_path / BASELINE_FILE).write_text("full: {command: [fit], expected: {}, tolerance: 1}\n")
    with pytest.raises(ConfigError, match=f"{BASELINE_FILE}: .*command must start with train"):
        load_baseline(tmp_path)
