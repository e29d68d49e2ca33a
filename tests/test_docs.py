"""The API reference of the documentation site (docs/reference/) stays in step with the code:
every `::: xpretrieval...` block names something importable, and every public module of the
package has a block, so a new module cannot be left out. Building the site itself (links,
cross-references, docstrings) is `make docs`, with `mkdocs build --strict`."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "xpretrieval"
REFERENCE = ROOT / "docs" / "reference"
# a mkdocstrings block: `::: identifier` at the start of a line
BLOCK = re.compile(r"^:::[ \t]+([\w.]+)", flags=re.M)


def reference_identifiers() -> dict[str, str]:
    """Each identifier of a `:::` block in docs/reference, with the page that holds it."""
    identifiers = {}
    for page in sorted(REFERENCE.rglob("*.md")):
        for identifier in BLOCK.findall(page.read_text(encoding="utf-8")):
            identifiers[identifier] = page.relative_to(ROOT).as_posix()
    return identifiers


def public_modules() -> list[str]:
    """Dotted names of the package's public modules: every .py file below xpretrieval/ whose
    path has no part starting with an underscore (so no `__init__`, `__main__`, or private
    module or package)."""
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if not any(part.startswith("_") for part in parts):
            modules.append(".".join(("xpretrieval", *parts)))
    return modules


def resolve(identifier: str) -> object:
    """The module or object a dotted identifier names: the longest importable module prefix,
    then attributes."""
    parts = identifier.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            target = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and (module_name + ".").startswith(error.name + "."):
                continue  # this prefix (or a package above it) is not a module: a shorter one
            raise  # the module exists but imports something missing
        for attribute in parts[cut:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(identifier)


def test_the_reference_has_blocks():
    identifiers = reference_identifiers()
    assert identifiers, f"no `::: xpretrieval...` block in {REFERENCE}"
    outside = sorted(i for i in identifiers if i.split(".")[0] != "xpretrieval")
    assert not outside, f"blocks that do not document xpretrieval: {outside}"


@pytest.mark.parametrize("identifier", sorted(reference_identifiers()))
def test_every_reference_block_imports(identifier):
    try:
        resolve(identifier)
    except (ImportError, AttributeError) as error:
        page = reference_identifiers()[identifier]
        pytest.fail(f"{page}: `::: {identifier}` does not resolve: {error}")


def test_every_public_module_is_in_the_reference():
    documented = set(reference_identifiers())
    modules = public_modules()
    assert "xpretrieval.api" in modules and "xpretrieval.models.base" in modules, modules
    missing = [module for module in modules if module not in documented]
    assert not missing, (
        "public modules without a `::: module` block in docs/reference/ (add one to the "
        f"package's page, or make the module private with a leading underscore): {missing}"
    )
