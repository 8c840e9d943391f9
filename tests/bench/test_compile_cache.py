"""The persistent compilation cache of the console commands: where it lives, opting out, and reuse."""

from __future__ import annotations

import csv
import os
import pathlib
import re
import subprocess
import sys

import pytest

from adaptive_sched.bench import _compile_cache as cc


def test_default_dir_follows_xdg_cache_home(tmp_path: pathlib.Path) -> None:
    assert cc.default_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "adaptive-sched" / "jax"
    home = pathlib.Path(os.path.expanduser("~"))
    assert cc.default_dir({}) == home / ".cache" / "adaptive-sched" / "jax"
    assert cc.default_dir({"XDG_CACHE_HOME": ""}) == home / ".cache" / "adaptive-sched" / "jax"


@pytest.mark.parametrize(
    ("enabled", "env", "jax_dir", "expected"),
    [
        (True, {}, None, "XDG/adaptive-sched/jax"),
        (True, {}, "/from/jax", "/from/jax"),  # JAX's own setting is kept
        (True, {cc.ENV_VAR: "/mine"}, "/from/jax", "/mine"),  # our variable wins over it
        (True, {cc.ENV_VAR: "off"}, "/from/jax", None),
        (True, {cc.ENV_VAR: " OFF "}, None, None),
        (True, {cc.ENV_VAR: "0"}, None, None),
        (True, {cc.ENV_VAR: ""}, None, "XDG/adaptive-sched/jax"),  # empty = unset
        (False, {cc.ENV_VAR: "/mine"}, "/from/jax", None),  # --no-compile-cache wins over everything
    ],
)
def test_resolve_dir_precedence(enabled: bool, env: dict[str, str], jax_dir: str | None, expected: str | None) -> None:
    got = cc.resolve_dir(enabled, {"XDG_CACHE_HOME": "XDG", **env}, jax_dir)
    assert got == (None if expected is None else pathlib.Path(expected))


def _sweep(out: pathlib.Path, env: dict[str, str], *extra: str) -> tuple[str, list[dict[str, str]]]:
    argv = [sys.executable, "-m", "adaptive_sched", "sweep", "--task", "logreg", "--size", "tiny", "--steps", "5",
            "--seeds", "2", "--grid", "trend_up=1.01,1.1", "--out", str(out), *extra]  # fmt: skip
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    full_env.update(env)
    proc = subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "sweep.csv") as f:
        return proc.stdout, list(csv.DictReader(f))


def _counts(stdout: str) -> tuple[int, int]:
    m = re.search(r"(\d+) program\(s\) loaded \(saving [\d.]+ s of compilation\), (\d+) written", stdout)
    assert m, stdout
    return int(m.group(1)), int(m.group(2))


@pytest.mark.slow
def test_second_sweep_loads_what_the_first_compiled(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("jax")
    pytest.importorskip("sklearn")
    cache = tmp_path / "cache"
    env = {cc.ENV_VAR: str(cache)}
    first, rows1 = _sweep(tmp_path / "a", env)
    loaded, written = _counts(first)
    assert loaded == 0 and written >= 1
    assert f"persistent compilation cache {cache}" in first
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == written

    second, rows2 = _sweep(tmp_path / "b", env)
    loaded, written = _counts(second)
    assert loaded >= 1 and written == 0
    assert sorted(p.name for p in cache.iterdir()) == entries
    assert rows2 == rows1  # the loaded program computes the same numbers

    off, rows3 = _sweep(tmp_path / "c", {cc.ENV_VAR: str(tmp_path / "unused")}, "--no-compile-cache")
    assert "persistent compilation cache off" in off
    assert not (tmp_path / "unused").exists()
    assert rows3 == rows1


def test_a_load_slower_than_the_compile_it_replaces_reads_as_no_saving() -> None:
    # JAX records compile_time_saved as the original compile time minus the read time, which is
    # negative for a tiny program read on a loaded machine; the line said "saving -0.1 s".
    line = cc.CacheStats(pathlib.Path("/c"), hits=4, saved_s=-0.1).describe()
    assert _counts(line) == (4, 0) and "saving 0.0 s" in line
