"""The per-task summary (best baseline, P(beats), divergences, sample efficiency) on crafted results."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("scipy")

from adaptive_sched.bench._runner import TaskResult  # noqa: E402
from adaptive_sched.bench._summary import summarize, verdict  # noqa: E402
from adaptive_sched.bench._tasks import Task  # noqa: E402


def _result(is_rl: bool) -> TaskResult:
    methods, grid, seeds, steps = ["ours", "constant", "cosine"], [0.1, 1.0, 10.0], 3, 20
    metric = np.zeros((3, 3, seeds))
    metric[0] = [[0.5, 0.5, 0.5], [0.9, 0.92, 0.94], [0.6, 0.6, 0.6]]  # ours
    metric[1] = [[0.7, 0.7, 0.7], [0.8, 0.85, 0.95], [0.2, 0.2, 0.2]]  # constant
    metric[2] = [[0.6, 0.6, 0.6], [0.7, 0.7, 0.7], [0.99, 0.99, 0.99]]  # cosine
    loss = np.ones((3, 3, seeds, steps))
    loss[1, 2, 0, 5] = np.nan  # constant x10 seed 0 diverged (also its metric 0.2 < 0.3 initial)
    arrays = {
        "metric": metric,
        "metric_init": np.full((3, 3, seeds), 0.3),
        "metric_curve": metric[..., None] * np.ones(4),
        "eval_steps": np.broadcast_to(np.arange(1, 5) * 5, (3, 3, seeds, 4)),
        "loss": loss,
        "lr": np.ones((3, 3, seeds, steps)),
        "momentum": np.ones((3, 3, seeds, steps)),
    }
    if is_rl:
        ramp = np.minimum(0.3 + 0.07 * np.arange(steps), 1.0)
        arrays["reward"] = np.broadcast_to(ramp, (3, 3, seeds, steps)).copy()
        arrays["reward"][1] = 0.3  # constant never improves during training
        arrays["reward_std"] = np.full((3, 3, seeds, steps), 0.1)
        arrays["kl"] = np.broadcast_to(np.linspace(0.0, 2.0, steps), (3, 3, seeds, steps)).copy()
    task = Task(
        name="fake", metric_name="m", higher_is_better=True, steps=steps, is_rl=is_rl,
        reward_range=(0.0, 1.0) if is_rl else None,
    )  # fmt: skip
    return TaskResult(task, methods, grid, seeds, steps, arrays, 0.0, 0.0)


def test_summary_by_hand() -> None:
    s = summarize(_result(False), {"ours"})
    m = s["methods"]
    assert s["reference"] == pytest.approx(0.3)
    assert s["best_baseline"] == "constant"  # IQM at x1: constant 0.85 vs cosine 0.7
    assert s["best_baseline_tuned"] == "cosine"  # 0.99 at x10
    assert m["ours"]["base"]["mean"] == pytest.approx(0.92)
    assert m["ours"]["base"]["iqm"] == pytest.approx(0.92)
    # ours {0.9, 0.92, 0.94} vs constant {0.8, 0.85, 0.95}: wins 2+2+2 of 9 pairs
    assert m["ours"]["p_beats_best_baseline"] == pytest.approx(6 / 9)
    assert m["ours"]["tuned_multiplier"] == 1.0
    assert m["ours"]["p_beats_best_baseline_tuned"] == 0.0  # 0.9..0.94 vs 0.99
    assert m["cosine"]["lr_window"]["points"] == 1
    # ours: best 0.92 at x1, tolerance 0.05 * 0.62 = 0.031: only x1 qualifies
    assert m["ours"]["lr_window"]["width"] == 0.0
    assert m["constant"]["diverged_base"] == 0 and m["constant"]["diverged_grid"] == 3  # x10 is below init
    assert m["ours"]["diverged_grid"] == 0


def test_rl_summary_sample_efficiency_by_hand() -> None:
    s = summarize(_result(True), {"ours"})
    # best final at the base lr: ours 0.92; target = 0.3 + 0.9 * (0.92 - 0.3) = 0.858
    assert s["sample_efficiency_target"] == pytest.approx(0.858)
    ramp = np.minimum(0.3 + 0.07 * np.arange(20), 1.0)  # reaches 1.0 at step 11
    smooth = np.array([ramp[max(0, t - 9) : t + 1].mean() for t in range(20)])
    expected = int(np.flatnonzero(smooth >= 0.858)[0]) + 1
    assert s["methods"]["ours"]["rl"]["steps_to_90pct"] == expected
    assert s["methods"]["constant"]["rl"]["steps_to_90pct"] is None
    rl = s["methods"]["ours"]["rl"]
    assert rl["kl_mean"] == pytest.approx(1.0)
    assert rl["kl_std"] == pytest.approx(np.std(np.linspace(0.0, 2.0, 20)))
    assert rl["final_reward_var_across_seeds"] == pytest.approx(np.var([0.9, 0.92, 0.94], ddof=1))


def test_verdict_thresholds() -> None:
    assert [verdict(p) for p in (0.9, 0.75, 0.5, 0.25, 0.1, float("nan"))] == [
        "wins", "wins", "ties", "loses", "loses", "n/a",
    ]  # fmt: skip
