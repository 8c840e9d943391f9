"""Alternative criteria for the online lr search, run side by side with ``search_rule="range"`` and the peers.

Issue #16 asked for the search's criterion to be chosen from the literature
and for the alternatives to be measured side by side. Each alternative below
is a rule of the ``search`` family, registered for the run with
``adaptive_sched._rules.registered`` (the way any user-defined rule plugs in)
and used in place of ``range`` inside :func:`adaptive_sched.recommended` (the
slope test, the grad-norm guard and the cooldown stay the same):

* **range** (the chosen one, :mod:`adaptive_sched.rules.search`): grow until
  the robust smoothed loss rises, blows up or stops making new bests; land at
  half the lr of the best loss (the lr range test of Smith, 2017, in the run).
* **progress**: legs of 8 observations; double the lr after a leg while the
  leg's loss slope is significant (``T < -1``) and its progress *normalised by
  the lr*, ``-b/eta``, is at least 0.7 of the previous leg's (the loss still
  responds to the lr); else go back one doubling and stop.
* **progress-level**: as ``progress`` with the progress also normalised by the
  leg's mean loss, ``-b/(eta * mean)``, against the loss flattening as it falls.
* **probe**: alternate a base leg at ``eta`` and a probe leg at ``2 eta`` (8
  observations each); move to ``2 eta`` when the probe leg's slope is steeper
  than the base leg's by more than one standard error of the difference, else stop.
* **gated**: grow x1.1 per observation only while the slope of an exponentially
  weighted regression (decay 0.8) is significantly negative (``T < -1``);
  stop after 4 observations without growth and land at 1/1.5 of the lr.
* **grad-norm**: ``range``, but also stop (and land) when the smoothed gradient
  norm exceeds 1.5x its running minimum: the gradient statistics as an
  edge-of-stability signal (the grad-norm blow-up the issue names).
* **slope-growth**: no search; the slope test's own growth phase (x2 per test
  while progress steepens), the recommended configuration before issue #16.

Run: ``python examples/bench_search_alternatives.py`` (digits-mlp, logreg,
char-lm at the default size, horizon-free), ``--horizon`` (with
``total_steps``), or ``--tasks logreg --size tiny --seeds 1`` (quick).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import optax

import adaptive_sched
from adaptive_sched import _rules
from adaptive_sched._rules import Rule, Slot
from adaptive_sched.bench import _methods, _runner, _summary, _tasks
from adaptive_sched.rules import search as _search
from adaptive_sched.rules._math import TINY, log_knob

LEG = 8.0


def _or(xp: Any, a: Any, b: Any) -> Any:
    return xp.logical_not(xp.logical_and(xp.logical_not(a), xp.logical_not(b)))


def _ols(xp: Any, sl: Any, y: Any, ok: Any) -> tuple[dict[str, Any], Any, Any, Any]:
    """Running OLS of y on i = 1..n over a leg (sums in the slots): (new sums, slope, t statistic, mean)."""
    n = xp.where(ok, sl["n"] + 1.0, sl["n"])
    i = n
    sums = {
        "n": n,
        "st": xp.where(ok, sl["st"] + i, sl["st"]),
        "sy": xp.where(ok, sl["sy"] + y, sl["sy"]),
        "sty": xp.where(ok, sl["sty"] + i * y, sl["sty"]),
        "stt": xp.where(ok, sl["stt"] + i * i, sl["stt"]),
        "syy": xp.where(ok, sl["syy"] + y * y, sl["syy"]),
    }
    nn = xp.clip(n, 1.0, 1e30)
    ctt = sums["stt"] - sums["st"] * sums["st"] / nn
    cty = sums["sty"] - sums["st"] * sums["sy"] / nn
    cyy = sums["syy"] - sums["sy"] * sums["sy"] / nn
    b = cty / xp.clip(ctt, TINY, 1e30)
    rss = xp.clip(cyy - b * cty, 0.0, 1e30)
    se = xp.sqrt(xp.clip(rss / xp.clip(nn - 2.0, 1.0, 1e30) / xp.clip(ctt, TINY, 1e30), TINY, 1e30))
    return sums, b, b / se, sums["sy"] / nn


_LEG_SLOTS = ("n", "st", "sy", "sty", "stt", "syy")


def _legs(level: bool) -> Any:
    def progress(xp: Any, obs: Any, knobs: Any, ctx: Any) -> Any:
        """Progress: double the lr per leg while the lr-normalised progress of a leg holds up."""
        sl, ok = ctx.slots, obs.ok
        searching = sl["phase"] < 0.5
        sums, b, tstat, mean = _ols(xp, sl, obs.x, xp.logical_and(ok, searching))
        end = xp.logical_and(xp.logical_and(ok, searching), sums["n"] >= LEG)
        rate = -b / xp.exp(sl["s"])
        rate = rate / xp.clip(xp.abs(mean), 1e-12, 1e30) if level else rate
        first = sl["legs"] < 0.5
        responds = xp.logical_and(tstat < -1.0, _or(xp, first, rate >= 0.7 * sl["rate"]))
        grow = xp.logical_and(end, responds)
        stop = xp.logical_and(end, xp.logical_not(responds))
        inc = xp.where(grow, math.log(2.0), xp.where(stop, xp.where(first, 0.0, -math.log(2.0)), 0.0))
        new = {k: xp.where(end, 0.0, v) for k, v in sums.items()}
        new.update(
            phase=xp.where(stop, 1.0, sl["phase"]),
            rate=xp.where(grow, rate, sl["rate"]),
            s=sl["s"] + inc,
            legs=xp.where(end, sl["legs"] + 1.0, sl["legs"]),
        )
        return inc, new

    return progress


def probe(xp: Any, obs: Any, knobs: Any, ctx: Any) -> Any:
    """Probe: a base leg at eta, then a probe leg at 2*eta; keep 2*eta if its slope is significantly steeper."""
    sl, ok = ctx.slots, obs.ok
    searching = sl["phase"] < 0.5
    in_probe = sl["probing"] > 0.5
    sums, b, tstat, _ = _ols(xp, sl, obs.x, xp.logical_and(ok, searching))
    end = xp.logical_and(xp.logical_and(ok, searching), sums["n"] >= LEG)
    se = xp.abs(b / xp.where(xp.abs(tstat) > 0.0, tstat, 1.0))
    to_probe = xp.logical_and(end, xp.logical_not(in_probe))
    judged = xp.logical_and(end, in_probe)
    better = b < sl["b_base"] - xp.sqrt(se * se + sl["se_base"] * sl["se_base"])
    inc = xp.where(to_probe, math.log(2.0), xp.where(xp.logical_and(judged, xp.logical_not(better)), -math.log(2.0), 0.0))
    new = {k: xp.where(end, 0.0, v) for k, v in sums.items()}
    new.update(
        phase=xp.where(xp.logical_and(judged, xp.logical_not(better)), 1.0, sl["phase"]),
        probing=xp.where(to_probe, 1.0, xp.where(judged, 0.0, sl["probing"])),
        b_base=xp.where(to_probe, b, sl["b_base"]),
        se_base=xp.where(to_probe, se, sl["se_base"]),
    )
    return inc, new


def gated(xp: Any, obs: Any, knobs: Any, ctx: Any) -> Any:
    """Gated: grow x1.1 per observation only while an EW regression's slope is significantly negative."""
    sl, ok = ctx.slots, obs.ok
    searching = sl["phase"] < 0.5
    go = xp.logical_and(ok, searching)
    lam, t = 0.8, sl["k"] + 1.0
    w, w2 = lam * sl["w"] + 1.0, lam * lam * sl["w2"] + 1.0
    dt, dy = t - sl["mt"], obs.x - sl["my"]
    mt, my = sl["mt"] + dt / w, sl["my"] + dy / w
    ctt = lam * sl["ctt"] + dt * (t - mt)
    cty = lam * sl["cty"] + dt * (obs.x - my)
    cyy = lam * sl["cyy"] + dy * (obs.x - my)
    ne = w * w / w2
    b = cty / xp.clip(ctt, TINY, 1e30)
    s2 = xp.clip(cyy - b * cty, 0.0, 1e30) / w * ne / xp.clip(ne - 2.0, 1.0, 1e30)
    tstat = b / xp.sqrt(xp.clip(s2 * w / (ne * xp.clip(ctt, TINY, 1e30)), TINY, 1e30))
    progressing = _or(xp, t < 6.0, tstat < -1.0)
    held = xp.where(go, xp.where(progressing, 0.0, sl["held"] + 1.0), sl["held"])
    stop = xp.logical_and(go, held >= 4.0)
    inc = xp.where(go, xp.where(stop, -math.log(1.5), xp.where(progressing, math.log(1.1), 0.0)), 0.0)
    new = {
        "phase": xp.where(stop, 1.0, sl["phase"]), "held": held, "k": xp.where(go, t, sl["k"]),
        "w": xp.where(go, w, sl["w"]), "w2": xp.where(go, w2, sl["w2"]), "mt": xp.where(go, mt, sl["mt"]),
        "my": xp.where(go, my, sl["my"]), "ctt": xp.where(go, ctt, sl["ctt"]), "cty": xp.where(go, cty, sl["cty"]),
        "cyy": xp.where(go, cyy, sl["cyy"]),
    }
    return inc, new


def grad_norm_range(xp: Any, obs: Any, knobs: Any, ctx: Any) -> Any:
    """Grad-norm: the range search, also stopped by a smoothed gradient norm 1.5x its running minimum."""
    sl = ctx.slots
    own = {k: sl[k] for k in (s.name for s in _search.SLOTS)}
    inc, new = _search.search_range(xp, obs, knobs, ctx._replace(slots=own))
    g = ctx.signals["grad_norm"]
    gm = xp.where(g.ok, 0.8 * sl["gm"] + 0.2 * g.x, sl["gm"])
    gp = xp.where(g.ok, 0.8 * sl["gp"], sl["gp"])
    ghat = gm / xp.clip(1.0 - gp, TINY, 1.0)
    growing = new["phase"] < 1.5
    gmin = xp.where(xp.logical_and(xp.logical_and(g.ok, ghat < sl["gmin"]), growing), ghat, sl["gmin"])
    blow = xp.logical_and(xp.logical_and(growing, new["n"] >= knobs.min_samples), ghat > 1.5 * gmin)
    land = new["s_best"] - log_knob(xp, knobs.backoff)
    inc = xp.where(blow, inc + land - new["s"], inc)
    new["phase"] = xp.where(blow, 3.0, new["phase"])
    new["busy"] = xp.where(blow, 1.0, new["busy"])
    new["s"] = xp.where(blow, land, new["s"])
    new.update(gm=gm, gp=gp, gmin=gmin)
    return inc, new


def _zero_slots(*names: str, **inits: float) -> tuple[Slot, ...]:
    return tuple(Slot(n, init=inits.get(n, 0.0)) for n in names)


def _busy(slots: Any) -> Any:
    return slots["phase"] < 0.5


ALTERNATIVES: dict[str, Rule] = {
    "progress": Rule("search", "alt_progress", "increment", "loss", _legs(False), {},
                     slots=_zero_slots(*_LEG_SLOTS, "phase", "rate", "s", "legs"), busy=_busy),
    "progress-level": Rule("search", "alt_progress_level", "increment", "loss", _legs(True), {},
                           slots=_zero_slots(*_LEG_SLOTS, "phase", "rate", "s", "legs"), busy=_busy),
    "probe": Rule("search", "alt_probe", "increment", "loss", probe, {},
                  slots=_zero_slots(*_LEG_SLOTS, "phase", "probing", "b_base", "se_base"), busy=_busy),
    "gated": Rule("search", "alt_gated", "increment", "loss", gated, {},
                  slots=_zero_slots("phase", "held", "k", "w", "w2", "mt", "my", "ctt", "cty", "cyy"), busy=_busy),
    "grad-norm": Rule("search", "alt_grad_norm", "increment", "loss", grad_norm_range,
                      dict(_rules.lookup("search", "range").knobs),
                      slots=_search.SLOTS + _zero_slots("gm", "gp", "gmin", gp=1.0, gmin=1e30),
                      reads=("reward", "kl", "grad_norm"), busy=lambda s: s["busy"] > 0.5),
}  # fmt: skip
"""The alternative search rules (registered only while :func:`run` runs)."""

def _method(label: str, horizon: bool, **overrides: Any) -> _methods.Method:
    def build(lr: Any, task: Any, steps: int) -> Any:
        cfg = adaptive_sched.recommended(lr, total_steps=steps if horizon else None, **overrides)
        return adaptive_sched.optax.inject_hyperparams(optax.adam, cfg)(b1=0.9)

    return _methods.Method(label, "ours: alternative", True, label, build, uses_horizon=horizon)


def run(task_names: tuple[str, ...], size: str = "default", seeds: int = 5, horizon: bool = False) -> dict[str, Any]:
    """Run ``range``, each alternative, ``slope-growth`` and the peers; per task and method the headline numbers.

    Returns:
      ``{task: {method: {"base", "p_base", "tuned", "tuned_multiplier", "p_tuned", "gap_pct", "window",
      "worst"}}}``, as the bench's summary computes them (``gap_pct``: the base-lr mean against the best
      tuned baseline, positive = better; ``worst``: the worst seed-mean over the lr grid).
    """
    tasks = _tasks.get_tasks(task_names, size)
    out: dict[str, Any] = {}
    with _rules.registered(*ALTERNATIVES.values()):
        for name in task_names:
            task = tasks[name]
            methods = [_method("range", horizon)]
            methods += [_method(label, horizon, search_rule=r.name) for label, r in ALTERNATIVES.items()]
            methods.append(_method("slope-growth", horizon, search_rule="none", anneal_grow=1.0))
            methods += [m for m in _methods.get_methods(task) if not m.ours]
            res = _runner.run_task(task, methods, _methods.GRID, seeds)
            summary = _summary.summarize(res, {m.name for m in methods if m.ours})
            rows = _summary.method_rows(summary, [m.name for m in methods], task.higher_is_better)
            out[name] = rows
            print(f"\n## {name} ({task.metric_name}; best tuned baseline: {summary['best_baseline_tuned']}; "
                  f"{'horizon known' if horizon else 'horizon-free'})")  # fmt: skip
            print("| method | @base | P vs best @base | tuned (x) | P vs best tuned | untuned gap % | window | worst |")
            print("|---|---|---|---|---|---|---|---|")
            for n, r in rows.items():
                worst = "–" if r["worst"] is None else f"{r['worst']:.4f}"
                print(f"| {n} | {r['base']:.4f} | {r['p_base']:.2f} | {r['tuned']:.4f} (x{r['tuned_multiplier']:g}) "
                      f"| {r['p_tuned']:.2f} | {r['gap_pct']:+.1f} | {r['window']:.2f} | {worst} |")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", default="digits-mlp,logreg,char-lm", help="comma-separated bench tasks")
    parser.add_argument("--size", default="default", help="bench size (tiny, quick, default, full)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--horizon", action="store_true", help="give every ours the run's length (the cooldown)")
    args = parser.parse_args(argv)
    return run(tuple(args.tasks.split(",")), args.size, args.seeds, args.horizon)


if __name__ == "__main__":
    main()
