"""The README's "From Python" examples run as written, on the tiny models and BEIR fixture that
stand in for the real checkpoints and SciFact (the only changes: names, sizes and folders)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import TINY_BEIR

README = Path(__file__).parent.parent / "README.md"


def python_examples(section: str) -> str:
    """The ```python blocks of the README section titled `section`, joined."""
    text = README.read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", body, flags=re.S)
    assert blocks, f"no python example in README section {section!r}"
    return "\n".join(blocks)


def test_the_from_python_examples_run(tiny_model_dir, masked_lm_dir, tmp_path, capsys):
    code = python_examples("From Python")
    stand_ins = {
        "sentence-transformers/all-MiniLM-L6-v2": str(tiny_model_dir),
        "naver/splade-cocondenser-ensembledistil": str(masked_lm_dir),
        "data/scifact": str(TINY_BEIR),
        "max_steps=100": "max_steps=2",
        '"outputs/': f'"{tmp_path}/',
    }
    for name, stand_in in stand_ins.items():
        assert name in code, f"the README example no longer mentions {name}"
        code = code.replace(name, stand_in)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102  (our own README)
    assert 0 <= namespace["metrics"]["nDCG@10"] <= 1
    for run in ("scifact-dense", "scifact-splade"):
        assert (tmp_path / run / "metrics.json").is_file(), run
    assert "active_dims" in capsys.readouterr().out
