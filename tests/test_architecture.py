"""The layers of DESIGN hold: import-linter's contracts (pyproject.toml) pass, so a lower layer
never imports a higher one and no package's modules import each other in a cycle; the entry
stays thin and every function reads on one screen."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_import_layers_and_acyclicity_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint is not None, "import-linter is not installed (pip install -e .[dev])"
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_importing_the_package_is_cheap():
    """`import xpretrieval` loads neither torch nor Hydra: the API names load on first use."""
    code = "import sys, xpretrieval; print(sorted({'torch', 'hydra'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.stdout.strip() == "[]", loaded.stderr


def test_every_function_reads_on_one_screen_and_the_entry_stays_thin():
    """No function of the package is longer than 80 lines, nor `__main__` (which composes the
    config and calls the command)."""
    package = ROOT / "xpretrieval"
    too_long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
        for path in sorted(package.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > 80
    ]
    assert not too_long, too_long
    assert len((package / "__main__.py").read_text().splitlines()) < 80
