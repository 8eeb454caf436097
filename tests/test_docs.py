"""Generated documentation stays current with the code it describes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_metrics_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_metrics_doc",
                                                  ROOT / "tools" / "gen_metrics_doc.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "metrics.md").read_text() == module.metrics_markdown(), (
        "docs/metrics.md is stale: run .venv/bin/python tools/gen_metrics_doc.py > docs/metrics.md"
    )


def test_readme_links_resolve() -> None:
    import re

    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to missing {target}"
