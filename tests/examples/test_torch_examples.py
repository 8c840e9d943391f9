"""The PyTorch examples run at small size and do what they say."""

from __future__ import annotations

import pytest
from streams import load_example

torch = pytest.importorskip("torch")

def test_torch_quickstart_runs_and_the_reward_drives_the_lr() -> None:
    hist = load_example("torch_quickstart").main(steps=60)
    lr = hist["lr"]
    assert len(lr) == 60 and lr[0] == 5e-5
    assert all(1e-6 <= v <= 5e-4 for v in lr)
    assert len(set(lr)) > 10  # the reward trend moved it


def test_bench_torch_overhead_runs_small() -> None:
    threads = torch.get_num_threads()
    out = load_example("bench_torch_overhead").main(repeats=1, calls=50, train_calls=5)
    assert torch.get_num_threads() == threads  # restored
    for key in ("observe_s", "plateau_s", "core_s", "generic_core_s", "train_step_s"):
        assert 0 < out[key] < 1.0
    # observe() runs exactly the core's update: same stream, same calls, same lr bit for bit.
    lrs = out["final_lr"]
    assert lrs["observe"] == lrs["core"] == lrs["generic"]
    assert lrs["observe"] != 5e-5 and 1e-6 <= lrs["observe"] <= 5e-4  # the reward trend moved it, within bounds


def test_why_lr_changed_prints_each_decision() -> None:
    out = load_example("why_lr_changed").main(steps=300, every=100)
    first, *_, last = out["texts"]
    assert first.startswith("step 100: lr ") and "search.range: responding at step" in first
    assert "search.range: landed at step" in last and "anneal.slope: " in last
    assert out["diagnostics"]["anneal.slope/factor"] < 1.0  # the slope test cut (on a stall: the cooldown is planned)
    assert "cooldown.linear: cooldown at step 151" in last
    d = out["diagnostics"]
    assert d["lr"] == pytest.approx(1e-5)  # the cooldown reached min_lr = base_lr / 100
    assert "decisions: search.range landed at step" in out["repr"]
