"""`python -m xpretrieval baseline [--fast] FOLDER...`: re-run recorded baselines and compare
their metrics with the recorded ones.

Each `experiments/<name>/baseline.yaml` gives the command of the baseline (`full`: the run
whose numbers its README reports) and a shrunken variant (`fast`: few steps on the test
fixture, pinned values) that `make test-baselines` runs, in CI too, so that a change shifting a
baseline fails CI:

    full:
      command: [evaluate, model=bm25]
      expected: {nDCG@10: 0.6762}
      tolerance: 0.002
    fast: ...

A baseline that builds on other runs (a teacher, a pre-trained checkpoint) names them in
`before`; each runs first, into its own folder, which `{name}` stands for in the command:

    full:
      before: {teacher: [train, +experiment=colbert]}
      command: [train, +experiment=distill_margin_mse,
                "teacher.model.name_or_path={teacher}/checkpoints/step-0000100"]

A fast check runs with portable numerics (`NUMERICS`): the vector width decides the order of
floating-point sums, so with each library's widest kernels a pinned value would move with the
CPU (AMD AVX2, AMD AVX-512, Intel AMX hosts); `--numerics native` measures that spread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from xpretrieval.core.checks import check_range
from xpretrieval.core.errors import ConfigError

BASELINE_FILE = "baseline.yaml"
ROOT = Path(__file__).resolve().parents[2]  # the checkout: relative paths in commands

# How each kernel library computes: "native" lets each pick the CPU's widest vectors; "portable"
# holds them to code that every x86-64 CPU the project meets runs alike: AVX2 for PyTorch's
# vectorised kernels, oneDNN, NumPy's SIMD loops (names of NumPy >= 2.4 and older), OpenBLAS and
# faiss (>= 1.15 and older loaders), oneMKL's SSE2 branch of conditional numerical
# reproducibility (COMPATIBLE: its AVX2 branch is for Intel CPUs only, AMD ones fall back to
# their own code), and one thread, which that reproducibility also needs. Fast checks run
# portable, about three times as long as native.
NATIVE = "native"  # as users run the full baselines
PORTABLE = "portable"  # as the fast checks are pinned
NUMERICS: dict[str, dict[str, str]] = {
    PORTABLE: {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "COMPATIBLE",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR AVX512F AVX512_SKX",
        "OPENBLAS_CORETYPE": "Haswell",
        "FAISS_SIMD_LEVEL": "AVX2",
        "FAISS_OPT_LEVEL": "avx2",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    },
    NATIVE: {},
}
FAST_CHECK_NUMERICS = PORTABLE


@dataclass
class Check:
    """A command of `python -m xpretrieval` and the metrics it must reproduce."""

    command: list[str]
    expected: dict[str, float]
    tolerance: float  # largest accepted absolute difference of each metric
    # runs the command builds on, by name, run first; `{name}` in the command is its folder
    before: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for command in (*self.before.values(), self.command):
            if not command or command[0] not in ("train", "evaluate"):
                raise ValueError(f"command must start with train or evaluate, got {command}")
        if not self.expected:
            raise ValueError("expected must name at least one metric")
        check_range("tolerance", self.tolerance, at_least=0)


@dataclass
class Baseline:
    """A `baseline.yaml`: the run its README reports and its shrunken, pinned check."""

    full: Check  # the run the README reports
    fast: Check  # its shrunken check: `make test-baselines` (and so CI) runs every one


@dataclass(frozen=True)
class Outcome:
    """Measured against expected values of one check."""

    measured: dict[str, float]
    expected: dict[str, float]
    tolerance: float

    @property
    def failures(self) -> list[str]:
        return [
            f"{name}: measured {self.measured.get(name, float('nan')):.4f}, expected "
            f"{value:.4f} +/- {self.tolerance}"
            for name, value in self.expected.items()
            if not abs(self.measured.get(name, float("inf")) - value) <= self.tolerance
        ]


def load_baseline(folder: Path) -> Baseline:
    """The baseline recorded in `folder/baseline.yaml`, validated."""
    path = Path(folder) / BASELINE_FILE
    if not path.is_file():
        raise ConfigError(f"{folder}: no {BASELINE_FILE}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Baseline), OmegaConf.load(path))
        return OmegaConf.to_object(merged)
    except (OmegaConfBaseException, ValueError) as error:
        raise ConfigError(f"{path}: {error}") from None


def run_check(check: Check, workdir: Path, numerics: str) -> Outcome:
    """Run the check's `before` runs into `workdir/<name>`, then its command into `workdir`
    (from the checkout), the kernels computing as `numerics` says (a key of `NUMERICS`);
    compare its metrics."""
    environment = numerics_environment(numerics)
    folders = {name: workdir / name for name in check.before}
    for name, command in check.before.items():
        _run(command, folders[name], environment)
    command = list(check.command)
    for name, folder in folders.items():
        command = [argument.replace(f"{{{name}}}", str(folder)) for argument in command]
    _run(command, workdir, environment)
    metrics = json.loads((workdir / "metrics.json").read_text(encoding="utf-8"))["aggregate"]
    return Outcome(metrics, check.expected, check.tolerance)


def numerics_environment(numerics: str) -> dict[str, str]:
    """This process's environment with the settings of `numerics` (a key of `NUMERICS`) in
    place of any of another mode's it holds."""
    if numerics not in NUMERICS:
        raise ConfigError(f"numerics must be one of {sorted(NUMERICS)}, got {numerics!r}")
    every = {name for settings in NUMERICS.values() for name in settings}
    environment = {name: value for name, value in os.environ.items() if name not in every}
    return {**environment, **NUMERICS[numerics]}


def _run(command: list[str], folder: Path, environment: dict[str, str]) -> None:
    """`python -m xpretrieval COMMAND hydra.run.dir=FOLDER`, failing with its stderr."""
    argv = [sys.executable, "-m", "xpretrieval", *command, f"hydra.run.dir={folder}"]
    result = subprocess.run(argv, cwd=ROOT, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m xpretrieval baseline", description=__doc__)
    parser.add_argument("folders", nargs="+", type=Path, help="experiments/<name> folders")
    parser.add_argument(
        "--fast", action="store_true", help="the shrunken check (make test-baselines)"
    )
    parser.add_argument(
        "--numerics",
        choices=sorted(NUMERICS),
        help=f"how the kernels compute (default: {FAST_CHECK_NUMERICS} for --fast, as pinned; "
        "native for the full runs, as users run them)",
    )
    options = parser.parse_args(args)
    numerics = options.numerics or (FAST_CHECK_NUMERICS if options.fast else NATIVE)
    failed = 0
    for folder in options.folders:
        baseline = load_baseline(folder)
        check = baseline.fast if options.fast else baseline.full
        with tempfile.TemporaryDirectory() as workdir:
            outcome = run_check(check, Path(workdir), numerics)
        for name, value in check.expected.items():
            print(
                f"{folder.name:36} {numerics:8} {name:10} expected {value:.4f}  measured "
                f"{outcome.measured.get(name, float('nan')):.4f}"
            )
        for failure in outcome.failures:
            print(f"{folder.name}: FAILED {failure}", file=sys.stderr)
        failed += bool(outcome.failures)
    sys.exit(1 if failed else 0)
