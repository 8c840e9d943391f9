"""Every python block of README.md and docs/*.md runs as written, and the docs name every example.

The blocks are collected by Sybil's Markdown parsers (``sybil.parsers.markdown``). The blocks of one
page run in order in one namespace, as a reader copies them. A block that needs an optional framework
sits between ``<!-- skip: start if(missing("torch"), reason=...) -->`` and ``<!-- skip: end -->`` (an
HTML comment, invisible on the page): it is skipped, and the page's other blocks still run, when that
framework is not installed. Files a block writes land in a temporary directory.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import time
import unittest
import warnings
from typing import Any

import pytest

sybil = pytest.importorskip("sybil")
from sybil.evaluators.skip import Skipper  # noqa: E402
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


def missing(*modules: str) -> bool:
    """True when one of ``modules`` cannot be imported (the skip comments' condition)."""
    return any(importlib.util.find_spec(m) is None for m in modules)


def _setup(namespace: dict[str, Any]) -> None:
    namespace["missing"] = missing
    namespace["__name__"] = "__main__"  # `if __name__ == "__main__":` guards run, as when pasted into a script


SYBIL = sybil.Sybil(parsers=[PythonCodeBlockParser(), SkipParser()])


def _run_page(page: str) -> tuple[int, list[str]]:
    """Evaluate the page's blocks in order; the number that ran and the skip reasons."""
    document = SYBIL.parse(ROOT / page)
    _setup(document.namespace)
    ran, skipped = 0, []
    with warnings.catch_warnings():
        # A block may warn on purpose (what the library says to a user); a warning is never a failure here.
        warnings.simplefilter("ignore")
        for example in document.examples():
            try:
                example.evaluate()
            except unittest.SkipTest as exc:
                skipped.append(f"{page}:{example.line}: {exc}")
                continue
            except Exception as exc:
                raise AssertionError(f"{page}, the block at line {example.line} failed: {exc!r}") from exc
            if not isinstance(example.region.evaluator, Skipper):
                ran += 1
    return ran, skipped


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_of_the_page_runs(page: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    ran, skipped = _run_page(page)
    took = time.perf_counter() - start
    print(f"{page}: {ran} block(s) ran, {len(skipped)} skipped, {took:.1f} s")
    if skipped and not ran:
        pytest.skip("; ".join(skipped))


def test_the_readme_has_runnable_quickstarts_and_both_set_up_commands_on_its_first_screen() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    blocks = re.findall(r"^```python\n", text, re.M)
    assert len(blocks) >= 3
    first_screen = "\n".join(text.splitlines()[:45])
    assert 'pip install ".[bench]" && adaptive-sched bench --out bench-out' in first_screen
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    readme_test = next(ln for ln in text.splitlines() if ln.startswith('pip install "torch=='))
    ci_test = next(ln for ln in ci.splitlines() if ln.startswith('pip install "torch=='))
    assert readme_test.startswith(ci_test), "the README's test command must be CI's (.ci/run runs it verbatim)"
    assert readme_test in first_screen


def test_every_example_script_is_named_in_the_docs() -> None:
    text = "\n".join((ROOT / p).read_text(encoding="utf-8") for p in PAGES)
    unnamed = [p.name for p in sorted((ROOT / "examples").glob("*.py")) if f"examples/{p.name}" not in text]
    assert not unnamed, f"examples not named in README.md or docs/: {unnamed}"


def _tables_tool() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("update_rule_tables", ROOT / "tools" / "update_rule_tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["README.md", "docs/concepts.md"])
def test_the_rule_tables_are_the_generated_one(name: str) -> None:
    from adaptive_sched import _rules

    tool = _tables_tool()
    text = (ROOT / name).read_text(encoding="utf-8")
    assert tool.update(ROOT / name, check=True) is False, f"{name}'s rule table is stale: python tools/update_rule_tables.py"
    table = tool.table_in(text)
    assert table == _rules.rule_table_markdown()
    for rule in _rules.RULES.values():
        assert f"| `{rule.name}` |" in table


def test_every_docs_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = [p.name for p in (ROOT / "docs").glob("*.md")]
    assert pages and all(p in nav for p in pages), [p for p in pages if p not in nav]
