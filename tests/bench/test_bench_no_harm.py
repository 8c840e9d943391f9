"""The no-harm table: every method against constant lr at the same grid lr, on a hand-checkable table."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("scipy")
# A diverged seed's curve is all NaN: its best-during-run is NaN, which NumPy warns about.
pytestmark = pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")

from adaptive_sched.bench._runner import TaskResult  # noqa: E402
from adaptive_sched.bench._summary import headlines, no_harm, no_harm_by_method, summarize  # noqa: E402
from adaptive_sched.bench._tasks import Task  # noqa: E402

NAN = float("nan")
GRID = [0.1, 1.0, 10.0]
# Per-seed final held-out loss (lower is better; 3.0 before training), 2 seeds per grid point.
TABLE: dict[str, list[list[float]]] = {
    # x0.1: 3 of 4 pairs beat constant (P 0.75); x1: loses every pair (P 0: harm); x10: wins every pair.
    "ours": [[0.9, 1.1], [0.8, 0.9], [1.0, 1.0]],
    # x0.1: 1 of 4 pairs (P 0.25: the boundary, still no harm); x1: equal (ties count half: 0.5);
    # x10: a diverged seed loses both its pairs, the other wins both (0.5), the mean is NaN (no Δ).
    "ours-horizon": [[1.1, 1.3], [0.5, 0.7], [NAN, 1.0]],
    "constant": [[1.0, 1.2], [0.5, 0.7], [2.0, 2.0]],
}


def _result(table: dict[str, list[list[float]]] = TABLE, name: str = "fake") -> TaskResult:
    methods, seeds, steps = list(table), 2, 8
    metric = np.array([table[m] for m in methods], dtype=np.float64)
    shape = metric.shape
    arrays = {
        "metric": metric,
        "metric_init": np.full(shape, 3.0),
        "metric_curve": metric[..., None] * np.ones(2),
        "eval_steps": np.broadcast_to(np.arange(1, 3) * 4, (*shape, 2)),
        "loss": np.ones((*shape, steps)),
        "lr": np.ones((*shape, steps)),
        "momentum": np.ones((*shape, steps)),
    }
    task = Task(name=name, metric_name="heldout_loss", higher_is_better=False, steps=steps, is_rl=False)
    return TaskResult(task, methods, GRID, seeds, steps, arrays, 0.0, 0.0)


def _summary(res: TaskResult) -> dict:
    s = summarize(res, {"ours", "ours-horizon"})
    s["headline"] = headlines(res, s, horizon_known="ours-horizon", horizon_free="ours")
    return s


def test_no_harm_by_hand() -> None:
    table = no_harm(_result())
    assert table is not None and table["baseline"] == "constant" and table["threshold"] == 0.25
    assert list(table["methods"]) == ["ours", "ours-horizon"]  # constant is the baseline, not a row
    ours = table["methods"]["ours"]
    assert [q["p"] for q in ours["points"]] == [0.75, 0.0, 1.0]
    # Δ = 100 (constant - ours) / |constant| (lower is better: positive = ours better)
    assert [q["gap_pct"] for q in ours["points"]] == pytest.approx([100 * 0.1 / 1.1, 100 * (0.6 - 0.85) / 0.6, 50.0])
    assert ours["worst"] == {"multiplier": 1.0, "p": 0.0, "gap_pct": pytest.approx(-41.667, abs=1e-3)}
    assert ours["harmed"] == [1.0] and ours["no_harm"] is False
    horizon = table["methods"]["ours-horizon"]
    assert [q["p"] for q in horizon["points"]] == [0.25, 0.5, 0.5]
    assert horizon["points"][2]["mean"] is None and horizon["points"][2]["gap_pct"] is None
    # Worst: lowest P (x0.1, exactly the threshold), so no harm anywhere.
    assert horizon["worst"] == {"multiplier": 0.1, "p": 0.25, "gap_pct": pytest.approx(100 * (1.1 - 1.2) / 1.1)}
    assert horizon["harmed"] == [] and horizon["no_harm"] is True


def test_no_harm_ties_on_p_go_to_the_lowest_gap_and_nan_gap_is_lowest() -> None:
    table = {
        "ours": [[1.5, 1.5], [3.0, 3.0], [NAN, NAN]],  # every point loses; x10 diverged entirely
        "constant": [[1.0, 1.0], [2.0, 2.0], [2.0, 2.0]],
    }
    worst = no_harm(_result(table))["methods"]["ours"]["worst"]
    assert worst == {"multiplier": 10.0, "p": 0.0, "gap_pct": None}
    table["ours"][2] = [2.5, 2.5]  # x10 now -25%; x0.1 and x1 tie at P 0, Δ -50%: the first of them
    worst = no_harm(_result(table))["methods"]["ours"]["worst"]
    assert worst["multiplier"] == 0.1 and worst["gap_pct"] == pytest.approx(-50.0)


def test_no_harm_needs_the_baseline() -> None:
    table = {k: v for k, v in TABLE.items() if k != "constant"}
    assert no_harm(_result(table)) is None
    assert summarize(_result(table), {"ours"})["no_harm"] is None
    assert no_harm_by_method({"fake": summarize(_result(table), {"ours"})}) == {}


def test_no_harm_is_in_the_summary_and_pivots_by_method() -> None:
    summaries = {n: _summary(_result(name=n)) for n in ("a", "b")}
    assert summaries["a"]["no_harm"] == no_harm(_result(name="a"))
    pivot = no_harm_by_method(summaries)
    assert list(pivot) == ["ours", "ours-horizon"] and list(pivot["ours"]) == ["a", "b"]
    assert pivot["ours"]["a"] == {"worst": {"multiplier": 1.0, "p": 0.0, "gap_pct": pytest.approx(-41.667, abs=1e-3)},
                                  "harmed": [1.0], "no_harm": False}  # fmt: skip


def test_report_shows_the_table_and_a_verdict_sentence_computed_from_it() -> None:
    pytest.importorskip("tabulate")
    from adaptive_sched.bench._report import no_harm_lines, verdict_lines

    results = [_result(name="a"), _result({**TABLE, "ours": TABLE["ours-horizon"]}, name="b")]
    summaries = {r.task.name: _summary(r) for r in results}
    lines = no_harm_lines(results, summaries, ["ours", "ours-horizon", "constant"])
    rows = {r[0]: r for r in ([c.strip() for c in ln.strip("|").split("|")] for ln in lines if ln.startswith("| "))}
    assert rows["method"] == ["method", "a", "b", "no harm on"]
    assert "constant" not in rows and "**constant**" not in rows
    assert rows["**ours**"] == [
        "**ours**", "**harm** (1 of 3 pts) · x1: P 0.00, Δ -41.7%", "no harm · x0.1: P 0.25, Δ -9.1%", "1 of 2",
    ]  # fmt: skip
    assert rows["**ours-horizon**"][1:] == ["no harm · x0.1: P 0.25, Δ -9.1%"] * 2 + ["2 of 2"]
    verdict = verdict_lines(results, summaries)
    harm = [ln for ln in verdict if ln.startswith("**Can it end worse than a constant lr?**")]
    assert harm == [
        "**Can it end worse than a constant lr?** Against constant lr at the same lr, at every grid point (harm: "
        "P < 0.25 that a seed beats constant's): `ours` does no harm on 1 of 2 task(s) and harms on a (worst x1: "
        "P 0.00, Δ -41.7%); `ours-horizon` does no harm on 2 of 2 task(s)."
    ]
    assert verdict.index(harm[0]) < verdict.index("Per task:")
    # Without constant there is no table and no sentence.
    bare = [_result({k: v for k, v in TABLE.items() if k != "constant"}, name="c")]
    bare_summaries = {"c": _summary(bare[0])}
    assert no_harm_lines(bare, bare_summaries, ["ours"]) == []
    assert not any("worse than a constant lr" in ln for ln in verdict_lines(bare, bare_summaries))


def test_results_json_carries_the_no_harm_table(tmp_path: pathlib.Path) -> None:
    from adaptive_sched.bench._report import write_json

    res = _result()
    path = tmp_path / "results.json"
    write_json(path, [res], {"fake": _summary(res)}, {"size": "test"}, None, [])
    doc = json.loads(path.read_text())  # strict JSON: the NaN mean became null
    assert doc["no_harm"]["ours"]["fake"]["harmed"] == [1.0]
    assert doc["no_harm"]["ours-horizon"]["fake"]["no_harm"] is True
    points = doc["tasks"]["fake"]["summary"]["no_harm"]["methods"]["ours-horizon"]["points"]
    assert points[2] == {"multiplier": 10.0, "p": 0.5, "gap_pct": None, "mean": None, "baseline_mean": 2.0}
