"""The PyTorch examples run at small size and do what they say."""

from __future__ import annotations

import math
import re

import pytest
from streams import load_example

torch = pytest.importorskip("torch")

def test_torch_quickstart_runs_and_the_recommended_config_drives_the_lr() -> None:
    hist = load_example("torch_quickstart").main(steps=60)
    lr = hist["lr"]
    # the first step runs at the evidence rule's warm start: base_lr * 0.25, one ramp step (of 10) up
    assert len(lr) == 60 and lr[0] == pytest.approx(5e-5 * 0.25, rel=1e-6)
    assert all(1e-6 <= v <= 5e-4 for v in lr)
    assert max(lr) > 5e-5  # the steps agreed: the lr grew past base_lr
    assert lr[-1] < max(lr) / 2  # the cooldown over the last 20% (total_steps=60)
    assert len(set(lr)) > 10


def test_bench_torch_overhead_runs_small() -> None:
    threads = torch.get_num_threads()
    out = load_example("bench_torch_overhead").main(repeats=1, calls=20, train_calls=2)
    assert torch.get_num_threads() == threads  # restored
    for key in ("core_recommended_s", "observe_recommended_s", "observe_trend_s", "plateau_s", "observe_device_s"):
        assert 0 < out[key] < 1.0
    assert out["device_aten_ops"] > out["compiled_aten_ops"] and out["params"] > 800_000
    # host and device mode ran the same stream through the same core: the same lr, bit for bit
    assert out["final_lr"]["host"] == out["final_lr"]["device"]


def test_why_lr_changed_prints_each_decision() -> None:
    out = load_example("why_lr_changed").main(steps=300, every=100)
    first, *_, last = out["texts"]
    assert first.startswith("step 100: lr ") and "lr.evidence: " in first and "cos_samples" in first
    d = out["diagnostics"]
    assert d["lr.evidence/cos_samples"] > 0  # the adapter fed grad_cos from the optimizer steps
    assert d["lr.evidence/factor"] > 1.0  # base_lr is too low here: the steps agreed and the lr grew past it
    assert re.search(r"lr\.evidence: (above_base_lr|far_above_base_lr|cut_\w+) at step \d+", "\n".join(out["texts"]))
    assert "cooldown.linear: cooldown at step 241" in last
    assert d["lr"] == pytest.approx(1e-5)  # the cooldown reached min_lr = base_lr / 100
    assert re.search(r"decisions: .*lr\.evidence \w+ at step \d+", out["repr"])
    assert "cooldown.linear cooldown at step 241" in out["repr"]


def test_bench_direction_cost_runs_small() -> None:
    threads = torch.get_num_threads()
    out = load_example("bench_direction_cost").main(steps=3)
    assert torch.get_num_threads() == threads  # restored
    assert out["params"] > 1_000_000 and 0 < out["direction_s"] < 1.0 and 0 < out["optimizer_step_s"] < 1.0


def test_bench_char_gpt_runs_small_and_its_adaptive_runs_start_as_documented() -> None:
    gpt = load_example("bench_char_gpt")
    tiny = {"block": 8, "batch": 2, "width": 8, "heads": 2, "layers": 1, "val_batches": 1}
    out = gpt.main(steps=3, lrs=(1e-3,), seeds=(0,), size=tiny, n_files=1)
    assert set(out) == set(gpt.METHODS) and all(math.isfinite(v[1e-3][0]) for v in out.values())
    text = gpt.load_text(1)
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text[:2000]])
    data = {"train": ids, "val": ids, "vocab": len(chars)}
    size = {**tiny, "val_batches": 1}
    assert gpt.run("rec", 1e-3, 0, 2, data, size)["lrs"][0] == pytest.approx(1e-3 / 4, rel=1e-6)  # the warm start
    assert gpt.run("rec_hw", 1e-3, 0, 2, data, size)["lrs"][0] == pytest.approx(1e-3 / 50, rel=1e-6)  # your warmup
    assert gpt.run("warmup_cosine", 1e-3, 0, 2, data, size)["lrs"][0] == pytest.approx(1e-3 / 50, rel=1e-6)
