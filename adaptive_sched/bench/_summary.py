"""Per-task summaries of the raw results: the numbers the report's tables show.

Definitions (also printed in the report):

* *final*: the task metric after the last step (held-out accuracy/loss, or the
  mean reward of a fresh batch of samples from the final policy).
* *best during run*: the best of the metric evaluated along the run and at its end.
* *tuned*: the method at the grid lr with the best seed-mean final metric.
* *diverged*: a run whose loss became non-finite at any step, whose final metric
  is non-finite, or whose final metric is worse than before training (for RL
  tasks: lower than the initial reward by more than 10% of the reward range:
  a reward collapse).
* *lr window*: :func:`adaptive_sched.bench._stats.lr_window` (5% of the best
  improvement over the untrained model).
* *sample efficiency* (RL): the first step at which the seed-mean reward,
  smoothed by a trailing 10-step moving average, reaches
  ``R_0 + 0.9 (R_best - R_0)``, where ``R_0`` is the reward before training and
  ``R_best`` the best method's final mean reward at the base lr.
* *P(beats best baseline)*: :func:`adaptive_sched.bench._stats.prob_improvement`
  of the method's per-seed final metrics against those of the best peer (the
  peer with the best IQM at the base lr; for *tuned*, the peer with the best
  tuned mean), each at the same operating point.
* *headline* (:func:`headline`): a recommended preset untuned (at the base
  lr) against every peer tuned (at the peer's best grid lr), the relative gap
  to the best tuned peer, tuned against every peer tuned, and every method's
  lr-window width; :func:`headlines` for both horizon settings (``ours-horizon``
  knows the run's length, ``ours`` does not).
* *worst grid point* (robustness): the method's worst seed-mean final metric
  over the whole lr grid (a non-finite mean, from a diverged seed, is the
  worst), and its :func:`relative_gap_pct` to the best tuned peer's mean.
  Per task and preset: whether the preset's worst point is strictly better
  than every peer's worst point, and its gap to the best of the peers' worst
  points (*margin*).
* *targets* (:func:`targets`): issue 16's targets, each computed from the
  summaries: the measured value per task, met or not, and by how much missed.
* *no harm* (:func:`no_harm`): every method against ``constant`` *at the same
  grid lr*: per grid point P(a seed of the method beats a seed of constant)
  and the Δ of the seed means (:func:`relative_gap_pct`, positive = better
  than constant); the worst grid point (lowest P, then lowest Δ); *no harm*
  when P >= :data:`NO_HARM_P` at every grid point.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from adaptive_sched.bench import _stats
from adaptive_sched.bench._runner import TaskResult

__all__ = [
    "LR_WINDOW_TARGETS",
    "NO_HARM_BASELINE",
    "NO_HARM_P",
    "WALL_LIMIT_S",
    "WITHIN_PCT",
    "headline",
    "headlines",
    "no_harm",
    "no_harm_by_method",
    "relative_gap_pct",
    "summarize",
    "targets",
    "verdict",
]

_SMOOTH = 10
_COLLAPSE = 0.1
WIN, LOSE = 0.75, 0.25
"""``P(beats best baseline)`` at or above WIN is reported as a win, at or below LOSE as a loss."""


def verdict(p: float) -> str:
    """``"wins"``, ``"loses"`` or ``"ties"`` for a probability of improvement ``p``."""
    if not math.isfinite(p):
        return "n/a"
    return "wins" if p >= WIN else "loses" if p <= LOSE else "ties"


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _diverged(res: TaskResult) -> np.ndarray:
    """Boolean (methods, grid, seeds): which runs diverged (see module docstring)."""
    a, task = res.arrays, res.task
    bad = ~np.all(np.isfinite(a["loss"]), axis=-1) | ~np.isfinite(a["metric"])
    init = a["metric_init"]
    margin = 0.0
    if task.is_rl and task.reward_range is not None:
        margin = _COLLAPSE * (task.reward_range[1] - task.reward_range[0])
    with np.errstate(invalid="ignore"):
        worse = a["metric"] < init - margin if task.higher_is_better else a["metric"] > init + margin
    return bad | worse


def _stats_of(x: np.ndarray) -> dict[str, Any]:
    mean, std = _stats.mean_std(x)
    lo, hi = _stats.bootstrap_ci(x)
    return {
        "mean": _finite(mean),
        "std": _finite(std),
        "iqm": _finite(_stats.iqm(x)),
        "ci": [_finite(lo), _finite(hi)],
        "per_seed": [_finite(v) for v in x],
    }


def _better(a: float, b: float, higher: bool) -> bool:
    if not math.isfinite(a):
        return False
    if not math.isfinite(b):
        return True
    return a > b if higher else a < b


def summarize(res: TaskResult, ours: set[str]) -> dict[str, Any]:
    """The report's numbers for one task (JSON-ready: NaN becomes None).

    Args:
      res: the task's raw results.
      ours: the names of our presets among ``res.methods``.

    Returns:
      ``{"methods": {name: {...}}, "best_baseline": ..., "best_baseline_tuned": ...,
      "reference": ...}``; see the module docstring for each quantity.
    """
    a, task = res.arrays, res.task
    higher = task.higher_is_better
    grid = np.asarray(res.grid)
    g1 = int(np.argmin(np.abs(np.log(grid))))  # the base lr (multiplier closest to 1)
    diverged = _diverged(res)
    final = a["metric"].astype(np.float64)
    reference = float(np.nanmean(a["metric_init"]))
    best_during = np.concatenate([a["metric_curve"], final[..., None]], axis=-1)
    best_during = np.nanmax(best_during, -1) if higher else np.nanmin(best_during, -1)

    methods: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(res.methods):
        grid_means = np.array([np.mean(final[i, j]) for j in range(grid.size)])
        window = _stats.lr_window(grid, grid_means, reference, higher)
        score = np.where(np.isfinite(grid_means), grid_means if higher else -grid_means, -np.inf)
        jt = int(np.argmax(score))
        entry: dict[str, Any] = {
            "ours": name in ours,
            "base": _stats_of(final[i, g1]),
            "best_during_run": _finite(float(np.mean(best_during[i, g1]))),
            "tuned_multiplier": float(grid[jt]),
            "tuned": _stats_of(final[i, jt]),
            "grid_means": [_finite(v) for v in grid_means],
            "grid_stds": [_finite(float(np.std(final[i, j], ddof=1))) if res.seeds > 1 else 0.0 for j in range(grid.size)],
            "lr_window": window._asdict(),
            "diverged_base": int(diverged[i, g1].sum()),
            "diverged_grid": int(diverged[i].sum()),
        }
        if task.is_rl:
            reward, kl = a["reward"][i, g1], a["kl"][i, g1]
            entry["rl"] = {
                "mean_reward_over_training": _finite(float(np.mean(reward))),
                "final_reward_var_across_seeds": _finite(float(np.var(final[i, g1], ddof=1)) if res.seeds > 1 else 0.0),
                "within_batch_reward_std": _finite(float(np.mean(a["reward_std"][i, g1]))),
                "kl_mean": _finite(float(np.mean(kl))),
                "kl_std": _finite(float(np.mean(np.std(kl, axis=-1)))),
                "kl_final": _finite(float(np.mean(kl[:, -_SMOOTH:]))),
            }
        jw = int(np.argmin(score))
        entry["worst"] = {"multiplier": float(grid[jw]), "mean": _finite(float(grid_means[jw])), "gap_pct": None}
        methods[name] = entry

    peers = [n for n in res.methods if n not in ours]
    out: dict[str, Any] = {
        "reference": reference,
        "base_index": g1,
        "methods": methods,
        "best_baseline": None,
        "best_baseline_tuned": None,
    }
    if peers:
        best = peers[0]
        for n in peers[1:]:
            if _better(_nan(methods[n]["base"]["iqm"]), _nan(methods[best]["base"]["iqm"]), higher):
                best = n
        best_t = peers[0]
        for n in peers[1:]:
            if _better(_nan(methods[n]["tuned"]["mean"]), _nan(methods[best_t]["tuned"]["mean"]), higher):
                best_t = n
        out["best_baseline"], out["best_baseline_tuned"] = best, best_t
        ib, it = res.methods.index(best), res.methods.index(best_t)
        jt_b = grid.tolist().index(methods[best_t]["tuned_multiplier"])
        for i, name in enumerate(res.methods):
            m = methods[name]
            jt = grid.tolist().index(m["tuned_multiplier"])
            m["p_beats_best_baseline"] = _stats.prob_improvement(final[i, g1], final[ib, g1], higher)
            m["p_beats_best_baseline_tuned"] = _stats.prob_improvement(final[i, jt], final[it, jt_b], higher)
        best_tuned_mean = _nan(methods[best_t]["tuned"]["mean"])
        for m in methods.values():
            m["worst"]["gap_pct"] = _finite(relative_gap_pct(_nan(m["worst"]["mean"]), best_tuned_mean, higher))
        out["robustness"] = {n: _robustness(methods, n, peers, higher) for n in res.methods if n in ours}
    out["no_harm"] = no_harm(res)
    if task.is_rl:
        _sample_efficiency(res, out, g1)
    return out


def _nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def _robustness(methods: dict[str, Any], name: str, peers: list[str], higher: bool) -> dict[str, Any]:
    """Preset ``name``'s worst grid point against every peer's worst grid point (module docstring)."""
    worst = _nan(methods[name]["worst"]["mean"])
    best_peer = peers[0]
    for n in peers[1:]:
        if _better(_nan(methods[n]["worst"]["mean"]), _nan(methods[best_peer]["worst"]["mean"]), higher):
            best_peer = n
    peer_worst = methods[best_peer]["worst"]
    return {
        "worst": dict(methods[name]["worst"]),
        "best_peer_worst": {"peer": best_peer, "multiplier": peer_worst["multiplier"], "mean": peer_worst["mean"]},
        "margin_pct": _finite(relative_gap_pct(worst, _nan(peer_worst["mean"]), higher)),
        "beats_every_peer_worst": all(_better(worst, _nan(methods[n]["worst"]["mean"]), higher) for n in peers),
    }


NO_HARM_BASELINE = "constant"
"""The method every other one is held against, grid point by grid point, in :func:`no_harm`."""
NO_HARM_P = LOSE
"""*No harm* at a grid point: ``P(beats constant at the same lr) >= NO_HARM_P`` (0.25, the verdicts' loss
threshold; note the verdicts call exactly 0.25 a loss, this table calls it no harm)."""


def no_harm(res: TaskResult, baseline: str = NO_HARM_BASELINE) -> dict[str, Any] | None:
    """Every method against ``baseline`` at the same grid lr: does it ever end worse than doing nothing?

    For method ``m`` and grid multiplier ``g``: ``p`` = P(a seed of ``m`` at ``g``
    beats a seed of ``baseline`` at ``g``) (:func:`adaptive_sched.bench._stats.prob_improvement`,
    over all pairs of seeds; a diverged seed loses) and ``gap_pct`` =
    :func:`relative_gap_pct` of the two seed means (positive = ``m`` better).
    The worst grid point is the one with the lowest ``p`` (ties: the lowest
    ``gap_pct``, a NaN gap counting as the lowest); ``no_harm`` when
    ``p >= NO_HARM_P`` at every grid point; ``harmed`` lists the multipliers
    where it is not.

    Returns:
      None when ``baseline`` did not run; else JSON-ready ``{"baseline", "threshold",
      "methods": {name: {"points": [{"multiplier", "p", "gap_pct", "mean", "baseline_mean"}],
      "worst": {"multiplier", "p", "gap_pct"}, "harmed": [multipliers], "no_harm": bool}}}``
      for every method but the baseline, in ``res.methods`` order.
    """
    if baseline not in res.methods:
        return None
    higher = res.task.higher_is_better
    final = res.arrays["metric"].astype(np.float64)
    ib = res.methods.index(baseline)
    methods: dict[str, Any] = {}
    for i, name in enumerate(res.methods):
        if i == ib:
            continue
        points = []
        for j, g in enumerate(res.grid):
            mean, base = float(np.mean(final[i, j])), float(np.mean(final[ib, j]))
            points.append({
                "multiplier": float(g),
                "p": _stats.prob_improvement(final[i, j], final[ib, j], higher),
                "gap_pct": _finite(relative_gap_pct(mean, base, higher)),
                "mean": _finite(mean),
                "baseline_mean": _finite(base),
            })  # fmt: skip
        worst = min(points, key=lambda q: (q["p"], -math.inf if q["gap_pct"] is None else q["gap_pct"]))
        harmed = [q["multiplier"] for q in points if not (q["p"] is not None and q["p"] >= NO_HARM_P)]
        methods[name] = {
            "points": points,
            "worst": {k: worst[k] for k in ("multiplier", "p", "gap_pct")},
            "harmed": harmed,
            "no_harm": not harmed,
        }
    return {"baseline": baseline, "threshold": NO_HARM_P, "methods": methods}


def no_harm_by_method(summaries: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-task :func:`no_harm` tables of ``summaries`` pivoted: ``{method: {task: {"worst", "harmed", "no_harm"}}}``.

    Methods in first-seen order over the tasks; a task without the baseline is left out.
    """
    out: dict[str, dict[str, Any]] = {}
    for task, summary in summaries.items():
        table = summary.get("no_harm")
        if table is None:
            continue
        for name, m in table["methods"].items():
            out.setdefault(name, {})[task] = {k: m[k] for k in ("worst", "harmed", "no_harm")}
    return out


def _sample_efficiency(res: TaskResult, out: dict[str, Any], g1: int) -> None:
    methods = out["methods"]
    finals = {n: _nan(m["base"]["mean"]) for n, m in methods.items()}
    best_name = max((n for n in finals if math.isfinite(finals[n])), key=lambda n: finals[n], default=None)
    if best_name is None:
        return
    r0 = out["reference"]
    target = r0 + 0.9 * (finals[best_name] - r0)
    out["sample_efficiency_target"] = target
    out["sample_efficiency_best_method"] = best_name
    for i, name in enumerate(res.methods):
        curve = _stats.moving_average(np.nanmean(res.arrays["reward"][i, g1], axis=0), _SMOOTH)
        methods[name]["rl"]["steps_to_90pct"] = _stats.steps_to_reach(curve, target, True)


def relative_gap_pct(ours: float, other: float, higher_is_better: bool) -> float:
    """Relative difference of ``ours`` to ``other`` in percent, signed so that positive means ours is better.

    ``100 * (ours - other) / |other|`` for a higher-is-better metric and
    ``100 * (other - ours) / |other|`` for a lower-is-better one; NaN when
    either value is not finite or ``other`` is 0. "Within 1%" is ``gap >= -1``.
    """
    if not (math.isfinite(ours) and math.isfinite(other)) or other == 0.0:
        return float("nan")
    diff = ours - other if higher_is_better else other - ours
    return 100.0 * diff / abs(other)


def headline(res: TaskResult, summary: dict[str, Any], method: str) -> dict[str, Any] | None:
    """The headline numbers of one task for ``method`` (the recommended preset); None if it did not run.

    Args:
      res: the task's raw results.
      summary: :func:`summarize` of ``res``.
      method: the recommended preset's name.

    Returns:
      JSON-ready ``{"method", "base": mean/std at the base lr, "best_baseline",
      "p_base", "verdict_base", "tuned": mean/std/multiplier, "best_baseline_tuned",
      "p_tuned", "verdict_tuned", "untuned_vs_tuned": {peer: {"multiplier",
      "mean", "p", "verdict"}}, "tuned_vs_tuned": {peer: the same},
      "vs_best_tuned": {"peer", "p", "verdict",
      "gap_pct"}, "ties_or_beats_every_tuned_peer", "lr_window": {method:
      decades}, "rl_vs_constant": the RL target against constant lr, or None
      (:func:`_rl_vs_constant`)}``. ``untuned_vs_tuned[peer]["p"]`` is
      ``P(ours at the base lr beats peer at its own best grid lr)`` over all
      pairs of seeds, ``tuned_vs_tuned[peer]["p"]`` the same with ours at its
      own best grid lr (``p_tuned`` is its entry for the best tuned peer);
      ``gap_pct`` is :func:`relative_gap_pct` of the seed means (ours at the
      base lr, the best tuned peer at its best lr).
    """
    ms = summary["methods"]
    if method not in ms or summary["best_baseline"] is None:
        return None
    higher = res.task.higher_is_better
    final = res.arrays["metric"].astype(np.float64)
    grid = list(res.grid)
    g1 = summary["base_index"]
    io = res.methods.index(method)
    o = ms[method]
    peers = [n for n in res.methods if not ms[n]["ours"]]
    jo = grid.index(o["tuned_multiplier"])
    versus: dict[str, dict[str, Any]] = {}
    tuned_versus: dict[str, dict[str, Any]] = {}
    for peer in peers:
        jp = grid.index(ms[peer]["tuned_multiplier"])
        peer_final = final[res.methods.index(peer), jp]
        p = _stats.prob_improvement(final[io, g1], peer_final, higher)
        pt = _stats.prob_improvement(final[io, jo], peer_final, higher)
        common = {"multiplier": ms[peer]["tuned_multiplier"], "mean": ms[peer]["tuned"]["mean"]}
        versus[peer] = {**common, "p": p, "verdict": verdict(p)}
        tuned_versus[peer] = {**common, "p": pt, "verdict": verdict(pt)}
    best_t = summary["best_baseline_tuned"]
    gap = relative_gap_pct(_nan(o["base"]["mean"]), _nan(ms[best_t]["tuned"]["mean"]), higher)
    return {
        "method": method,
        "base": {"mean": o["base"]["mean"], "std": o["base"]["std"]},
        "best_baseline": summary["best_baseline"],
        "p_base": o["p_beats_best_baseline"],
        "verdict_base": verdict(o["p_beats_best_baseline"]),
        "tuned": {"mean": o["tuned"]["mean"], "std": o["tuned"]["std"], "multiplier": o["tuned_multiplier"]},
        "best_baseline_tuned": best_t,
        "p_tuned": o["p_beats_best_baseline_tuned"],
        "verdict_tuned": verdict(o["p_beats_best_baseline_tuned"]),
        "untuned_vs_tuned": versus,
        "tuned_vs_tuned": tuned_versus,
        "vs_best_tuned": {
            "peer": best_t,
            "p": versus[best_t]["p"],
            "verdict": versus[best_t]["verdict"],
            "gap_pct": _finite(gap),
        },
        "ties_or_beats_every_tuned_peer": all(v["verdict"] in ("wins", "ties") for v in versus.values()),
        "lr_window": {n: ms[n]["lr_window"]["width"] for n in res.methods},
        "rl_vs_constant": _rl_vs_constant(res, io, g1),
    }


def _rl_vs_constant(res: TaskResult, io: int, g1: int) -> dict[str, Any] | None:
    """The RL target at the base lr: KL std over steps no higher than constant lr's, at equal or better reward.

    Per seed: the std over steps of the batch-mean KL, and the mean reward over
    training. ``p_kl_std_lower`` is P(a seed of ours has the lower KL std),
    ``p_train_reward_higher`` P(a seed of ours has the higher training-mean
    reward), over all pairs of seeds; ``met`` when neither is a loss (both
    P > 0.25, the verdicts' threshold). None on a supervised task or without
    the ``constant`` peer.
    """
    if not res.task.is_rl or "constant" not in res.methods:
        return None
    ic = res.methods.index("constant")
    kl = np.std(res.arrays["kl"][[io, ic], g1].astype(np.float64), axis=-1)
    reward = np.mean(res.arrays["reward"][[io, ic], g1].astype(np.float64), axis=-1)
    p_kl = _stats.prob_improvement(kl[0], kl[1], higher_is_better=False)
    p_reward = _stats.prob_improvement(reward[0], reward[1], higher_is_better=True)
    return {
        "kl_std": _finite(float(np.mean(kl[0]))),
        "kl_std_constant": _finite(float(np.mean(kl[1]))),
        "p_kl_std_lower": p_kl,
        "train_reward": _finite(float(np.mean(reward[0]))),
        "train_reward_constant": _finite(float(np.mean(reward[1]))),
        "p_train_reward_higher": p_reward,
        "met": bool(verdict(p_kl) != "loses" and verdict(p_reward) != "loses"),
    }


HORIZON_SETTINGS: tuple[str, ...] = ("horizon_known", "horizon_free")
"""The keys of :func:`headlines`: the run's length given to ours (``total_steps``) or not."""


def headlines(res: TaskResult, summary: dict[str, Any], horizon_known: str, horizon_free: str) -> dict[str, Any]:
    """:func:`headline` for both horizon settings: ``{"horizon_known": ..., "horizon_free": ...}``.

    Args:
      res: the task's raw results.
      summary: :func:`summarize` of ``res``.
      horizon_known: the preset given the run's length (the bench's ``ours-horizon``).
      horizon_free: the preset without it (the bench's ``ours``).
    """
    return {"horizon_known": headline(res, summary, horizon_known), "horizon_free": headline(res, summary, horizon_free)}


# --------------------------------------------------------------------------- targets

WITHIN_PCT = -1.0
"""*Within 1% of the best tuned baseline*: :func:`relative_gap_pct` ``>= WITHIN_PCT``."""
LR_WINDOW_TARGETS: dict[str, float] = {"digits-mlp": 1.5, "logreg": 1.5, "char-lm": 1.0}
"""The lr-window target per task, in decades (``width >= target``)."""
WALL_LIMIT_S = 300.0
"""The default run's wall-time target (seconds, 2 CPU cores, compilation cache warm)."""


def _short(value: float | None, op: str, threshold: float) -> float | None:
    """How far ``value`` is from passing ``op threshold`` (>= 0 for a failing value), None when unknown."""
    if value is None or not math.isfinite(value):
        return None
    return max(0.0, value - threshold) if op == "<=" else max(0.0, threshold - value)


def _target(
    tid: str,
    group: str,
    method: str | None,
    text: str,
    kind: str,
    op: str,
    threshold: float | dict[str, float],
    per_task: dict[str, dict[str, Any]],
    required: int | None,
) -> dict[str, Any]:
    """One target row: per-task values and passes, the count against ``required`` (None: every task measured).

    ``threshold`` is one number, or one per task (the lr window).
    """
    of = len(per_task)
    need = of if required is None else required
    count = sum(bool(v["ok"]) for v in per_task.values())
    misses = []
    for t, v in per_task.items():
        if not v["ok"]:
            thr = threshold[t] if isinstance(threshold, dict) else threshold
            misses.append({**v, "task": t, "short": _short(v["value"], op, thr)})
    misses.sort(key=lambda m: math.inf if m["short"] is None else m["short"])
    return {
        "id": tid,
        "group": group,
        "method": method,
        "target": text,
        "kind": kind,
        "op": op,
        "threshold": threshold,
        "required": need,
        "of": of,
        "all": required is None,
        "count": count,
        "per_task": per_task,
        "met": None if of == 0 else count >= need,
        "tasks_short": max(0, need - count),
        "misses": misses,
    }


def targets(
    results: list[TaskResult] | tuple[TaskResult, ...], summaries: dict[str, Any], wall_s: float
) -> list[dict[str, Any]]:
    """Issue 16's targets, computed from the summaries (JSON-ready).

    Reads, per task, ``summaries[task]["headline"]`` (:func:`headlines`),
    ``["robustness"]`` and ``["methods"][...]["lr_window"]``. The targets
    (defined on the default run: 5 tasks, 5 seeds, grid x0.1..x10):

    * horizon known (``headline["horizon_known"]``, ours given ``total_steps``):
      tuned ties or wins against the best tuned baseline on every task
      (``p_tuned > 0.25``, i.e. not a loss by :func:`verdict`); untuned
      within 1% of the best tuned baseline (``gap_pct >= -1``) on >= 4 tasks.
    * horizon-free (``headline["horizon_free"]``): never loses at the base lr
      (``p_base > 0.25`` on every task); wins there (``p_base >= 0.75``) on
      >= 2; untuned within 1% on >= 3; tuned ties or wins against tuned
      schedule-free on every task.
    * robustness, for both presets: the worst grid point strictly better than
      every peer's worst on every supervised task (value: the margin, %);
      lr window >= :data:`LR_WINDOW_TARGETS` decades (of the tasks that ran).
    * RL, for both presets: the KL-std target against constant lr met
      (:func:`_rl_vs_constant`) on every RL task.
    * the run's wall time <= :data:`WALL_LIMIT_S` seconds.

    "Every task" means every task of ``results`` (of its kind); a target none
    of whose tasks ran has ``met`` None.

    Args:
      results: the tasks' raw results (for the task names and kinds).
      summaries: per task, :func:`summarize` with ``"headline"`` set to :func:`headlines`.
      wall_s: the run's wall time in seconds.

    Returns:
      A list of ``{"id", "group", "method", "target", "kind", "op",
      "threshold", "required", "of", "all", "count", "per_task": {task:
      {"value", "ok", ...}}, "met", "tasks_short", "misses": [{"task",
      "value", "ok", "short", ...}]}``: ``value`` is the measured number
      (None when not finite), ``short`` how far it is from the threshold
      (None when unknown), misses sorted closest first.
    """
    names = [r.task.name for r in results]
    rl = {r.task.name for r in results if r.task.is_rl}
    supervised = [n for n in names if n not in rl]

    def heads(key: str) -> dict[str, dict[str, Any] | None]:
        return {n: (summaries[n].get("headline") or {}).get(key) for n in names}

    def per_task(hs: dict[str, dict[str, Any] | None], read: Any, ok: Any) -> dict[str, dict[str, Any]]:
        values = {n: None if h is None else read(h) for n, h in hs.items()}
        return {n: {"value": v, "ok": bool(hs[n] is not None and ok(v))} for n, v in values.items()}

    def not_a_loss(p: float | None) -> bool:
        return p is not None and math.isfinite(p) and p > LOSE

    def a_win(p: float | None) -> bool:
        return p is not None and math.isfinite(p) and p >= WIN

    def within(g: float | None) -> bool:
        return g is not None and g >= WITHIN_PCT

    def vs_schedule_free(h: dict[str, Any]) -> float | None:
        v = h["tuned_vs_tuned"].get("schedule-free")
        return None if v is None else v["p"]

    known, free = heads("horizon_known"), heads("horizon_free")
    hk = next((h["method"] for h in known.values() if h is not None), None)
    hf = next((h["method"] for h in free.values() if h is not None), None)
    rows = [
        _target("horizon-known/tuned", "horizon known", hk,
                "tuned ties or wins against the best tuned baseline (P > 0.25) on every task",
                "p", ">", LOSE, per_task(known, lambda h: h["p_tuned"], not_a_loss), None),
        _target("horizon-known/untuned-within-1pct", "horizon known", hk,
                "untuned (base lr) within 1% of the best tuned baseline on >= 4 tasks",
                "gap_pct", ">=", WITHIN_PCT, per_task(known, lambda h: h["vs_best_tuned"]["gap_pct"], within), 4),
        _target("horizon-free/never-loses", "horizon-free", hf,
                "never loses at the base lr against the best baseline there (P > 0.25 on every task)",
                "p", ">", LOSE, per_task(free, lambda h: h["p_base"], not_a_loss), None),
        _target("horizon-free/wins", "horizon-free", hf,
                "wins at the base lr against the best baseline there (P >= 0.75) on >= 2 tasks",
                "p", ">=", WIN, per_task(free, lambda h: h["p_base"], a_win), 2),
        _target("horizon-free/untuned-within-1pct", "horizon-free", hf,
                "untuned (base lr) within 1% of the best tuned baseline on >= 3 tasks",
                "gap_pct", ">=", WITHIN_PCT, per_task(free, lambda h: h["vs_best_tuned"]["gap_pct"], within), 3),
        _target("horizon-free/tuned-vs-schedule-free", "horizon-free", hf,
                "tuned ties or wins against tuned schedule-free (P > 0.25) on every task",
                "p", ">", LOSE, per_task(free, vs_schedule_free, not_a_loss), None),
    ]  # fmt: skip
    presets = [(m, hs) for m, hs in ((hf, free), (hk, known)) if m is not None]
    for m, _ in presets:
        robust = {}
        for n in supervised:
            r = summaries[n].get("robustness", {}).get(m)
            robust[n] = {
                "value": None if r is None else r["margin_pct"],
                "ok": bool(r is not None and r["beats_every_peer_worst"]),
                "peer": None if r is None else r["best_peer_worst"]["peer"],
            }
        rows.append(_target(f"robustness/worst-point/{m}", "robustness", m,
                            "worst grid point better than every peer's worst grid point on every supervised task "
                            "(value: margin to the best of the peers' worst points, %)",
                            "margin_pct", ">", 0.0, robust, None))  # fmt: skip
    for m, _ in presets:
        needs = {n: v for n, v in LR_WINDOW_TARGETS.items() if n in names and m in summaries[n]["methods"]}
        widths = {n: float(summaries[n]["methods"][m]["lr_window"]["width"]) for n in needs}
        windows = {n: {"value": w, "ok": w >= needs[n]} for n, w in widths.items()}
        text = ", ".join(f">= {v:g} decades on {n}" for n, v in LR_WINDOW_TARGETS.items())
        rows.append(_target(f"robustness/lr-window/{m}", "robustness", m, f"lr window {text}",
                            "decades", ">=", needs, windows, None))  # fmt: skip
    for m, hs in presets:
        kl: dict[str, dict[str, Any]] = {}
        for n in names:
            if n not in rl:
                continue
            h = hs[n]
            t = None if h is None else h["rl_vs_constant"]
            if t is None:
                kl[n] = {"value": None, "ok": False, "p_kl_std_lower": None, "p_train_reward_higher": None}
                continue
            pk, pr = float(t["p_kl_std_lower"]), float(t["p_train_reward_higher"])
            kl[n] = {"value": min(pk, pr), "ok": bool(t["met"]), "p_kl_std_lower": pk, "p_train_reward_higher": pr}
        rows.append(_target(f"rl/kl-std/{m}", "RL", m,
                            "KL std over steps no higher than constant lr's at equal or better training reward, "
                            "on every RL task (value: the smaller of the two P; each must be > 0.25)",
                            "rl", ">", LOSE, kl, None))  # fmt: skip
    rows.append(_target("wall-time", "wall time", None,
                        f"the run's wall time <= {WALL_LIMIT_S:g} s (2 CPU cores, compile cache warm)",
                        "seconds", "<=", WALL_LIMIT_S,
                        {"run": {"value": _finite(wall_s), "ok": bool(wall_s <= WALL_LIMIT_S)}}, None))  # fmt: skip
    return rows


def method_rows(summary: dict[str, Any], names: list[str], higher_is_better: bool) -> dict[str, dict[str, Any]]:
    """One task's headline numbers per method, for scripts that compare methods side by side (the examples).

    Returns:
      ``{name: {"base", "p_base", "tuned", "tuned_multiplier", "p_tuned", "gap_pct", "window", "worst"}}``:
      the mean at the base lr and P of beating the best baseline there; the mean at the method's best grid
      lr and P of beating the best baseline at its own best; ``gap_pct``, the base-lr mean against the best
      tuned baseline (:func:`relative_gap_pct`, positive = better); the lr window in decades; the worst
      seed-mean over the grid.
    """
    ms = summary["methods"]
    best_tuned = ms[summary["best_baseline_tuned"]]["tuned"]["mean"]
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        s = ms[name]
        rows[name] = {
            "base": s["base"]["mean"],
            "p_base": s["p_beats_best_baseline"],
            "tuned": s["tuned"]["mean"],
            "tuned_multiplier": s["tuned_multiplier"],
            "p_tuned": s["p_beats_best_baseline_tuned"],
            "gap_pct": relative_gap_pct(_nan(s["base"]["mean"]), _nan(best_tuned), higher_is_better),
            "window": s["lr_window"]["width"],
            "worst": s["worst"]["mean"],
        }
    return rows
