"""The per-task summary (best baseline, P(beats), divergences, sample efficiency) on crafted results."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("scipy")

from adaptive_sched.bench._runner import TaskResult
from adaptive_sched.bench._summary import headline, headlines, relative_gap_pct, summarize, verdict
from adaptive_sched.bench._tasks import Task


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


def test_rl_target_against_constant_by_hand() -> None:
    res = _result(True)
    res.arrays["kl"][1] *= 2.0  # constant's KL swings twice as much over the steps
    res.arrays["kl"][0, 1, 2] *= 3.0  # ours' seed 2 at the base lr swings 3x: loses to every constant seed
    res.arrays["reward"][0, 1, 0] = 0.3  # ours' seed 0 at the base lr never improves either: ties constant
    s = summarize(res, {"ours"})
    t = headline(res, s, "ours")["rl_vs_constant"]
    sd = np.std(np.linspace(0.0, 2.0, 20))
    ramp = np.minimum(0.3 + 0.07 * np.arange(20), 1.0)
    assert t["kl_std"] == pytest.approx((sd + sd + 3 * sd) / 3) and t["kl_std_constant"] == pytest.approx(2 * sd)
    assert t["p_kl_std_lower"] == pytest.approx(6 / 9)  # seeds 0, 1 below all 3 constant seeds; seed 2 above
    assert t["train_reward"] == pytest.approx((0.3 + 2 * ramp.mean()) / 3) and t["train_reward_constant"] == pytest.approx(0.3)
    assert t["p_train_reward_higher"] == pytest.approx((3 * 0.5 + 6) / 9)  # seed 0 ties the 3 constant seeds
    assert t["met"] is True  # KL std not higher (P > 0.25) at equal or better reward (P > 0.25)
    res.arrays["reward"][0, 1] = 0.2  # every ours seed now below constant: reward loses
    t = headline(res, summarize(res, {"ours"}), "ours")["rl_vs_constant"]
    assert t["p_train_reward_higher"] == 0.0 and t["met"] is False
    assert headline(_loss_result(), summarize(_loss_result(), {"ours"}), "ours")["rl_vs_constant"] is None
    pytest.importorskip("tabulate")
    from adaptive_sched.bench._report import headline_tables

    s = summarize(res, {"ours"})
    s["headline"] = headlines(res, s, horizon_known="ours-horizon", horizon_free="ours")  # no ours-horizon here
    lines = headline_tables([res], {"fake": s}, res.methods)
    header = next(i for i, ln in enumerate(lines) if "P(lower KL std)" in ln)
    cells = [c.strip() for c in lines[header + 2].strip("|").split("|")]
    assert cells == ["fake", "ours", f"{5 * sd / 3:.2f} vs {2 * sd:.2f}", "0.67", "0.200 vs 0.300", "0.00", "no"]
    assert len(lines) == header + 3  # one row (only ours ran), and the RL table ends the headline


def test_verdict_thresholds() -> None:
    assert [verdict(p) for p in (0.9, 0.75, 0.5, 0.25, 0.1, float("nan"))] == [
        "wins", "wins", "ties", "loses", "loses", "n/a",
    ]  # fmt: skip


GRID5 = [0.1, 0.3, 1.0, 3.0, 10.0]
# Seed pairs of a lower-is-better final metric (held-out loss), 2.0 before training.
LOSS_TABLE = {
    "ours": [[1.10, 1.10], [1.02, 1.04], [1.00, 1.02], [1.03, 1.03], [1.50, 1.50]],
    "constant": [[1.30, 1.30], [1.10, 1.10], [1.05, 1.07], [1.20, 1.20], [2.50, 2.50]],
    "cosine": [[1.40, 1.40], [1.20, 1.20], [1.08, 1.10], [0.99, 1.03], [1.05, 1.05]],
    "onecycle": [[1.50, 1.50], [1.50, 1.50], [1.50, 1.50], [0.90, 0.92], [1.50, 1.50]],
}


def _loss_result() -> TaskResult:
    methods, seeds, steps = list(LOSS_TABLE), 2, 10
    metric = np.array([LOSS_TABLE[m] for m in methods])
    shape = metric.shape
    arrays = {
        "metric": metric,
        "metric_init": np.full(shape, 2.0),
        "metric_curve": metric[..., None] * np.ones(3),
        "eval_steps": np.broadcast_to(np.arange(1, 4) * 3, (*shape, 3)),
        "loss": np.ones((*shape, steps)),
        "lr": np.ones((*shape, steps)),
        "momentum": np.ones((*shape, steps)),
    }
    task = Task(name="fake-loss", metric_name="loss", higher_is_better=False, steps=steps, is_rl=False)
    return TaskResult(task, methods, GRID5, seeds, steps, arrays, 0.0, 0.0)


def test_headline_columns_by_hand() -> None:
    res = _loss_result()
    s = summarize(res, {"ours"})
    h = headline(res, s, "ours")
    assert h is not None and h["method"] == "ours"
    # ours at x1: {1.00, 1.02}
    assert h["base"]["mean"] == pytest.approx(1.01) and h["base"]["std"] == pytest.approx(0.02 / np.sqrt(2))
    # Best baseline at the base lr (IQM of 2 seeds = mean): constant 1.06 < cosine 1.09 < onecycle 1.5.
    # ours {1.00, 1.02} beats constant {1.05, 1.07} in all 4 pairs.
    assert h["best_baseline"] == "constant" and h["p_base"] == 1.0 and h["verdict_base"] == "wins"
    # Tuned: ours x1 (1.01); constant x1 (1.06), cosine x3 (1.01), onecycle x3 (0.91): best tuned onecycle.
    assert h["tuned"] == {"mean": pytest.approx(1.01), "std": pytest.approx(0.01414, abs=1e-5), "multiplier": 1.0}
    assert h["best_baseline_tuned"] == "onecycle" and h["p_tuned"] == 0.0 and h["verdict_tuned"] == "loses"
    # Untuned ours against each baseline at its own best lr.
    v = h["untuned_vs_tuned"]
    assert {m: (v[m]["multiplier"], v[m]["verdict"]) for m in v} == {
        "constant": (1.0, "wins"), "cosine": (3.0, "ties"), "onecycle": (3.0, "loses"),
    }  # fmt: skip
    # ours {1.00, 1.02} vs cosine x3 {0.99, 1.03}: 1.00 beats 1.03, 1.02 beats 1.03: 2 of 4 pairs.
    assert v["cosine"]["p"] == 0.5 and v["cosine"]["mean"] == pytest.approx(1.01)
    assert v["onecycle"]["p"] == 0.0 and v["onecycle"]["mean"] == pytest.approx(0.91)
    # Δ vs best tuned = 100 (0.91 - 1.01) / 0.91 (lower is better: positive would mean ours better).
    assert h["vs_best_tuned"]["peer"] == "onecycle"
    assert h["vs_best_tuned"]["gap_pct"] == pytest.approx(100 * (0.91 - 1.01) / 0.91)  # -10.99%
    assert h["vs_best_tuned"]["verdict"] == "loses"
    assert h["ties_or_beats_every_tuned_peer"] is False
    # lr windows, tolerance 5% of |m* - 2.0|:
    # ours: best 1.01 at x1, tol 0.0495: x0.3 (1.03) and x3 (1.03) in, x0.1 (1.10) out: x0.3..x3 = 1 decade.
    # constant: best 1.06 at x1, tol 0.047: x0.3 (1.10) in, x3 (1.20) out: log10(1/0.3).
    # cosine: best 1.01 at x3, tol 0.0495: x10 (1.05) in, x1 (1.09) out: log10(10/3).
    # onecycle: best 0.91 at x3 only.
    assert h["lr_window"] == {
        "ours": pytest.approx(1.0), "constant": pytest.approx(np.log10(1 / 0.3)),
        "cosine": pytest.approx(np.log10(10 / 3)), "onecycle": 0.0,
    }  # fmt: skip


def test_headline_needs_the_preset_and_a_baseline() -> None:
    res = _loss_result()
    assert headline(res, summarize(res, {"ours"}), "ours-kl") is None
    everything_ours = set(res.methods)
    assert headline(res, summarize(res, everything_ours), "ours") is None


def test_relative_gap_sign_and_edge_cases() -> None:
    assert relative_gap_pct(0.99, 1.0, True) == pytest.approx(-1.0)  # accuracy 1% below: ours worse
    assert relative_gap_pct(1.0, 0.8, True) == pytest.approx(25.0)
    assert relative_gap_pct(1.01, 1.0, False) == pytest.approx(-1.0)  # loss 1% above: ours worse
    assert relative_gap_pct(-0.2, -0.1, True) == pytest.approx(-100.0)  # negative rewards: |other|
    for ours, other in ((1.0, 0.0), (float("nan"), 1.0), (1.0, float("inf"))):
        assert np.isnan(relative_gap_pct(ours, other, True))


def test_headline_tables_render_the_columns() -> None:
    pytest.importorskip("tabulate")
    from adaptive_sched.bench._report import headline_tables

    res = _loss_result()
    s = summarize(res, {"ours"})
    # LOSS_TABLE's ours plays both settings here; test_bench_targets has a table with both presets.
    s["headline"] = {"horizon_known": headline(res, s, "ours"), "horizon_free": headline(res, s, "ours")}
    lines = headline_tables([res], {"fake-loss": s}, res.methods)
    text = "\n".join(lines)
    start = lines.index("### Horizon known: untuned against tuned")
    tables = [ln for ln in lines[start:] if ln.startswith("|")]
    widths = {ln.count("|") for ln in tables[:3]}
    assert len(widths) == 1  # header, rule and row of the first table line up
    row = next(ln for ln in lines[start:] if ln.startswith("| fake-loss"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["fake-loss", "loss ↓", "1.010 ± 0.014"]
    assert cells[3:6] == ["1.00 wins (x1: 1.060)", "0.50 ties (x3: 1.010)", "0.00 loses (x3: 0.910)"]
    assert cells[6:] == ["onecycle x3: 0.910", "-11.0%", "no", "1.010 ± 0.014 (x1)", "0.00 loses"]
    assert "ties or beats every tuned baseline on 0 and is within 1% of the best tuned baseline (Δ ≥ -1%) on 0" in text
    assert "at the base lr `ours` wins 1, ties 0, loses 0" in text
    assert "tuned against the best tuned baseline it wins 0, ties 0, loses 1" in text
    start = lines.index("### lr window")
    window_row = next(ln for ln in lines[start:] if ln.startswith("| fake-loss"))
    assert [c.strip() for c in window_row.strip("|").split("|")] == ["fake-loss", "1.00", "0.52", "0.52", "0.00"]


def test_markdown_tables_come_from_tabulate_and_escape_pipes() -> None:
    pytest.importorskip("tabulate")
    from adaptive_sched.bench._report import _table

    lines = _table(["task", "description"], [["rl-length", "penalty -|len - 8|/8"], ["x", "0.950"]])
    assert lines[0] == "| task      | description            |"
    assert set(lines[1]) <= set("|:-")
    assert lines[2] == "| rl-length | penalty -\\|len - 8\\|/8 |"
    assert lines[3].startswith("| x         | 0.950 ")  # no number parsing: "0.950" stays as written
