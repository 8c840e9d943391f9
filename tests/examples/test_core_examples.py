"""Every example of the core and optax front door runs (small sizes) and does what it says."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_core_quickstart() -> None:
    out = load("core_quickstart").main(steps=150)
    lr = np.asarray(out["numpy_lr"])
    assert lr[-1] > lr[0]  # improving reward, KL under target: lr rose
    vm = out["vmap_lr"]
    assert vm.shape == (3, 150)
    assert vm[0, -1] < vm[1, -1] <= vm[2, -1]  # larger reward_up, larger lr


def test_optax_quickstart() -> None:
    pytest.importorskip("optax")
    hist = load("optax_quickstart").main(steps=60)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    assert len(set(hist["lr"])) > 1  # the controller moved the lr


def test_bench_core_runs_small() -> None:
    pytest.importorskip("optax")
    out = load("bench_core").main(configs=8, steps=50, repeats=1, mlp_repeats=1)
    assert out["core_scan"]["max_rel_diff_vs_hand"] < 1e-5  # same rule, same numbers
    assert out["mlp_step"]["ratio"] > 0
