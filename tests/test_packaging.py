"""The installed distribution (a wheel, not the editable checkout) holds every package of the source tree."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def _source_packages() -> set[str]:
    """Every ``adaptive_sched`` package in the tree, mapped through ``package-dir`` the way setuptools maps it."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    dirs = {"adaptive_sched": ROOT / "adaptive_sched", **{k: ROOT / v for k, v in setup.get("package-dir", {}).items()}}
    found = set()
    for top, path in dirs.items():
        for init in path.rglob("__init__.py"):
            rel = init.parent.relative_to(path).parts
            found.add(".".join((top, *rel)))
    return found


def test_every_package_of_the_tree_is_in_the_wheel() -> None:
    # A package missing from [tool.setuptools] packages is absent from `pip install .` (the README's main
    # command) though the editable install the tests run from still finds it: adaptive_sched.rules was.
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    missing = _source_packages() - listed
    assert not missing, f"packages in the tree but not in pyproject's [tool.setuptools] packages: {sorted(missing)}"


def test_license_is_an_spdx_expression() -> None:
    # setuptools deprecates the TOML-table form ``license = {text = ...}`` and stops building it after
    # 2027-02-18; the SPDX string needs setuptools >= 77 (PEP 639), so the build requirement says so.
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["license"] == "MIT"
    assert "setuptools>=77" in meta["build-system"]["requires"]
