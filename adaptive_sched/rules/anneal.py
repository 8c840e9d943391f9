"""The ``anneal`` family: horizon-free annealing by a stationarity test on the loss."""

from __future__ import annotations

from typing import Any

from adaptive_sched._rules import CHECKS, Family, Rule, RuleContext, Slot, knob, register, register_family
from adaptive_sched.rules._math import TINY

FAMILY = register_family(Family("anneal", "horizon-free annealing of the lr by a stationarity test on the loss"))

ANNEAL_MIN_SAMPLES = knob(
    "anneal_min_samples", 30.0, CHECKS["ge1"], "observations at the current lr before the first test (``n_min``, >= 1)."
)
ANNEAL_TEST_EVERY = knob("anneal_test_every", 5.0, CHECKS["ge1"], "observations between tests once ``n >= n_min`` (>= 1).")
ANNEAL_WINDOW_POWER = knob(
    "anneal_window_power", 1.0, CHECKS["nonneg"],
    "``c`` of the growing window: observation ``i`` of ``n`` weighs ``(i/n)^c`` (0: plain OLS).",
)
ANNEAL_Z_DROP = knob(
    "anneal_z_drop", 1.0, CHECKS["nonneg"], "one-sided z of the stationarity test: cut unless ``T < -t_q(z)`` (>= 0)."
)
ANNEAL_DROP = knob(
    "anneal_drop", 0.9, CHECKS["down"],
    "lr factor when the slope is negative but not significantly so (``-t_q < T < 0``; in (0, 1]).",
)
ANNEAL_DROP_PLANNED = knob(
    "anneal_drop_planned", 1.0, CHECKS["down"],
    "lr factor in place of ``anneal_drop`` while a cooldown is planned (``ctx.planned``; in (0, 1]): 1 leaves "
    "the gradual annealing to the cooldown.",
)
ANNEAL_DROP_FLAT = knob(
    "anneal_drop_flat", 0.6, CHECKS["down"], "lr factor when the slope is flat or rising (``T >= 0``; in (0, 1])."
)
ANNEAL_UP = knob("anneal_up", 2.0, CHECKS["up"], "lr factor per growth test passed before the first cut (>= 1).")
ANNEAL_Z_UP = knob("anneal_z_up", 1.645, CHECKS["nonneg"], "z of the growth test: grow only if ``T < -t_q(z_up)`` (>= 0).")
ANNEAL_GROW = knob("anneal_grow", 1.0, CHECKS["flag"], "1 to allow the growth phase before the first cut, 0 to disable.")

ANNEAL_SLOTS = (
    "n", "w", "w2", "mt", "my", "ctt", "cty", "cyy", "growing", "prev_slope", "tstat", "t0", "i_prev", "next", "tests",
)
_MIN_OBS = 3.0  # observations a leg needs before its first test (the t statistic's dof)


def _or(xp: Any, a: Any, b: Any) -> Any:
    return xp.logical_not(xp.logical_and(xp.logical_not(a), xp.logical_not(b)))


def _t_quantile(z: Any, dof: Any) -> Any:
    """Cornish-Fisher: the Student-t quantile of the normal quantile ``z`` with ``dof`` degrees of freedom."""
    return z * (1.0 + (z * z + 1.0) / (4.0 * dof))


def _first_test(xp: Any, knobs: Any) -> Any:
    """The leg step of the first test: ``k * ceil(n_min / k)``."""
    k = knobs.test_every
    return k * (0.0 - xp.floor((0.0 - knobs.min_samples) / k))


def anneal_slope(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    r"""Slope test: cut the lr once the loss shows no significant downward slope at the current lr.

    SASA/SLOPE (Lang, Zhang & Xiao, 2019, "Using Statistics to Automate
    Stochastic Optimization", NeurIPS; the loss-only SLOPE test of the
    ``microsoft/statopt`` reference code) made horizon-free and O(1). Within a
    *leg* (the steps since the lr last changed: step ``i = t - t_0`` of the
    leg, counted in update calls, i.e. optimizer steps, whatever the
    observation interval) the rule fits ``y ~ a + b*i`` to the raw losses
    observed in the leg by weighted least squares with weights ``w = (i/i_n)^c``
    for the observation at leg step ``i`` when the latest is at ``i_n`` (a
    growing window, the O(1) analogue of SLOPE's leaky bucket that keeps the
    most recent fraction of the samples), updated with forgetting
    ``rho = (i_{n-1}/i_n)^c`` as (West, 1979, CACM 22(9)) ``W = rho*W + 1``,
    ``t_bar += (i_n - t_bar)/W``, ``C_ty = rho*C_ty + (i_n - t_bar_old)(y - y_bar)``
    and likewise ``C_tt``, ``C_yy``. With Kish's effective sample size
    ``n_e = W^2 / sum w^2``:

    ``b = C_ty/C_tt``, ``s^2 = (C_yy - b*C_ty)/W * n_e/(n_e - 2)``,
    ``T = b / sqrt(s^2 * W / (n_e * C_tt))``.

    A test runs at the first observation at a leg step ``i >= k*ceil(n_min/k)``,
    then at the first one past each later multiple of ``k`` (``anneal_min_samples``
    = ``n_min``, ``anneal_test_every`` = ``k``, both in steps; with a loss
    observed every step: when ``i >= n_min`` and ``i mod k = 0``), once the leg
    holds at least 3 observations, against the Student-t quantile with
    ``n_e - 2`` degrees of freedom (Cornish-Fisher: ``t_q(z) = z*(1 + (z^2 + 1)/(4*(n_e - 2)))``):

    * *anneal*: ``T > -t_q(z_drop)`` (progress is within noise: the iterates are
      stationary at this lr): the lr is cut, by evidence, and the leg restarts:
      ``eta <- eta * drop_flat`` if ``T >= 0`` (the loss is flat or rising: no
      sign of progress), else ``eta <- eta * drop`` (it still leans down, within
      noise: a gentle cut, so the lr stays high while there may be progress,
      as a cosine schedule does early on); while a cooldown is planned (a
      horizon, or one started: ``ctx.planned``) ``drop_planned`` (1: no cut)
      replaces ``drop``: the cooldown anneals, as in warmup-stable-decay,
      and the test cuts only a stall;
    * *grow* (before the first cut only, when ``anneal_grow = 1``; the warm-up
      role of SALSA, Zhang et al., 2020, without its line search):
      ``T < -t_q(z_up)`` and the slope at least as steep as at the previous
      growth: ``eta <- eta * up`` and the leg restarts; significant progress
      that is not steeper ends the growth phase;
    * otherwise the lr holds.

    So the lr never falls faster than one cut per ``n_min`` steps, and needs
    no total step count; a run shorter than ``n_min`` steps (plus the search,
    when one runs) is never cut. On a stationary stream the first test cuts
    with probability about ``Phi(z_drop)``; a loss falling clearly faster than
    its noise is never cut. Non-finite losses are not observed. While an lr
    search that runs before it is still searching (``ctx.searching``), the
    rule observes nothing and its leg starts when the search ends.
    """
    sl = ctx.slots
    searching = ctx.searching
    ok = obs.ok if searching is False else xp.logical_and(obs.ok, xp.logical_not(searching))
    t0 = sl["t0"] if searching is False else xp.where(searching, ctx.t, sl["t0"])
    y = obs.x
    i = ctx.t - t0  # this step's position in the leg, in steps (1 at the first step after a change)
    n = sl["n"] + 1.0  # observations in the leg, this one included
    ratio = xp.clip(sl["i_prev"] / xp.clip(i, 1.0, 1e30), TINY, 1.0)
    rho = xp.where(n > 1.0, xp.exp(knobs.window_power * xp.log(ratio)), 0.0)
    w = rho * sl["w"] + 1.0
    w2 = rho * rho * sl["w2"] + 1.0
    dt = i - sl["mt"]
    dy = y - sl["my"]
    mt = sl["mt"] + dt / w
    my = sl["my"] + dy / w
    ctt = rho * sl["ctt"] + dt * (i - mt)
    cty = rho * sl["cty"] + dt * (y - my)
    cyy = rho * sl["cyy"] + dy * (y - my)

    ne = w * w / xp.clip(w2, TINY, 1e30)
    dof = xp.clip(ne - 2.0, 1.0, 1e30)
    ctt_s = xp.clip(ctt, TINY, 1e30)
    b = cty / ctt_s
    rss = xp.clip(cyy - b * cty, 0.0, 1e30)
    sigma2 = rss / xp.clip(w, TINY, 1e30) * ne / dof
    se = xp.sqrt(xp.clip(sigma2 * w / (xp.clip(ne, TINY, 1e30) * ctt_s), TINY, 1e30))
    tstat = xp.clip(b / se, -1e30, 1e30)  # a perfectly flat leg (rss = 0, b = 0) has T = 0: stationary
    tq_drop = _t_quantile(knobs.z_drop, dof)
    tq_up = _t_quantile(knobs.z_up, dof)

    k = knobs.test_every
    next_test = xp.where(sl["next"] > 0.5, sl["next"], _first_test(xp, knobs))
    due = xp.logical_and(i >= next_test - 0.5, n >= _MIN_OBS)
    test = xp.logical_and(ok, due)
    stationary = xp.logical_and(test, tstat > -tq_drop)
    growing = sl["growing"] > 0.5
    strong = xp.logical_and(xp.logical_and(test, tstat < -tq_up), growing)
    steeper = b <= sl["prev_slope"]
    grow_now = xp.logical_and(xp.logical_and(strong, steeper), knobs.grow > 0.5)
    stop_growing = _or(xp, _or(xp, stationary, xp.logical_and(strong, xp.logical_not(steeper))), knobs.grow < 0.5)
    change = _or(xp, stationary, grow_now)
    lean = knobs.log_drop
    if ctx.planned is not False:  # a cooldown is scheduled: it anneals; the slope test cuts only a stall
        lean = xp.where(ctx.planned, knobs.log_drop_planned, lean)
    cut = xp.where(tstat >= 0.0, knobs.log_drop_flat, lean)
    inc = xp.where(stationary, cut, xp.where(grow_now, knobs.log_up, 0.0))

    fresh = {"n": n, "w": w, "w2": w2, "mt": mt, "my": my, "ctt": ctt, "cty": cty, "cyy": cyy, "i_prev": i}
    new = {key: xp.where(ok, xp.where(change, 0.0, v), sl[key]) for key, v in fresh.items()}
    new["growing"] = xp.where(xp.logical_and(ok, stop_growing), 0.0, sl["growing"])
    new["prev_slope"] = xp.where(xp.logical_and(ok, grow_now), b, sl["prev_slope"])
    new["tstat"] = xp.where(test, tstat, sl["tstat"])
    new["tests"] = xp.where(test, sl["tests"] + 1.0, sl["tests"])
    new["t0"] = xp.where(xp.logical_and(ok, change), ctx.t, t0)
    after = k * (xp.floor(i / k) + 1.0)  # the next multiple of k past this test
    new["next"] = xp.where(xp.logical_and(ok, change), 0.0, xp.where(test, after, sl["next"]))
    return xp.where(ok, inc, 0.0), new


def _explain_slope(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> dict[str, Any]:
    """The slope test's state: the last test's ``tstat`` and the ``threshold`` the next one compares with.

    ``tstat``: ``T`` at the last test (0 before the first); ``threshold``:
    ``-t_q(z_drop)`` at the current leg's effective sample size (a test cuts
    unless ``T < threshold``); ``leg_steps``: steps since the lr last changed
    (``i``); ``next_test``: the leg step of the next test; ``tests``: tests
    run so far; ``growing``: 1 while the growth phase is on.
    """
    sl = ctx.slots
    ne = sl["w"] * sl["w"] / xp.clip(sl["w2"], TINY, 1e30)
    dof = xp.clip(ne - 2.0, 1.0, 1e30)
    return {
        "tstat": sl["tstat"],
        "threshold": -_t_quantile(knobs.z_drop, dof),
        "leg_steps": ctx.t - sl["t0"],
        "next_test": xp.where(sl["next"] > 0.5, sl["next"], _first_test(xp, knobs)),
        "tests": sl["tests"],
        "growing": sl["growing"],
    }


def _slope_event(xp: Any, obs: Any, knobs: Any, ctx: RuleContext, outcome: Any) -> Any:
    """``grew`` (x ``anneal_up``), ``cut`` (x ``anneal_drop``/``anneal_drop_flat``) or ``held``: a test ran and the lr stayed."""
    out = outcome.out
    tested = outcome.slots["tests"] > ctx.slots["tests"]
    return xp.where(out < 0.0, 2, xp.where(out > 0.0, 1, xp.where(tested, 3, 0)))


for _rule in (
    Rule("anneal", "slope", "increment", "loss", anneal_slope,
         {"min_samples": ANNEAL_MIN_SAMPLES, "test_every": ANNEAL_TEST_EVERY, "window_power": ANNEAL_WINDOW_POWER,
          "z_drop": ANNEAL_Z_DROP, "drop": ANNEAL_DROP, "drop_planned": ANNEAL_DROP_PLANNED, "drop_flat": ANNEAL_DROP_FLAT, "up": ANNEAL_UP, "z_up": ANNEAL_Z_UP, "grow": ANNEAL_GROW},
         slots=tuple(Slot(k, init=1.0 if k == "growing" else 0.0) for k in ANNEAL_SLOTS),
         formula='weighted LS slope `b` of the raw loss since the last lr change, `T = b/se(b)`; every `k` steps once the leg is `n_min` steps long: `η ← η·drop_flat` if `T ≥ 0`, `η·drop` if `−t_q(z_drop) < T < 0` (no significant progress; `drop_planned` while a cooldown is planned), before the first cut `η ← η·up` if `T < −t_q(z_up)` and steeper (SASA/SLOPE, Lang et al. 2019)',
         events=("grew", "cut", "held"), event=_slope_event, explain=_explain_slope),
):  # fmt: skip
    register(_rule)
