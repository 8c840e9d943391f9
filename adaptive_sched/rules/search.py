"""The ``search`` family: an online lr search at the start of the run (an lr range test inside the real run)."""

from __future__ import annotations

import math
from typing import Any

from adaptive_sched._rules import CHECKS, Family, Rule, RuleContext, Slot, knob, register, register_family
from adaptive_sched.rules._math import TINY, either, ever_seen

FAMILY = register_family(
    Family("search", "online lr search at the start of the run (an lr range test inside the real run)")
)

SEARCH_START = knob(
    "search_start", 0.5, CHECKS["positive"],
    "the search's first lr, as a multiple of ``base_lr`` (> 0; the warm start of the range test).",
)
SEARCH_GROWTH = knob(
    "search_growth", 1.12, CHECKS["up"], "lr factor of the first growth step (>= 1); later steps grow less (``search_tau``).",
)
SEARCH_TAU = knob(
    "search_tau", 40.0, CHECKS["ge1"],
    "observations over which the growth per step halves: step ``n`` grows by ``g^(1/(1 + n/tau))`` (>= 1).",
)
SEARCH_BETA = knob("search_beta", 0.8, CHECKS["beta"], "EMA decay of the search's robust smoothed loss, in [0, 1).")
SEARCH_MIN_SAMPLES = knob(
    "search_min_samples", 8.0, CHECKS["ge1"], "observations before the search tests anything (>= 1)."
)
SEARCH_Z_RISE = knob(
    "search_z_rise", 3.0, CHECKS["nonneg"],
    "a rise of the smoothed loss by this many of its standard errors above its best ends the growth (>= 0).",
)
SEARCH_Z_PROGRESS = knob(
    "search_z_progress", 3.0, CHECKS["nonneg"],
    "a fall by this many standard errors below the start level counts as the loss responding (>= 0).",
)
SEARCH_PATIENCE = knob(
    "search_patience", 4.0, CHECKS["ge1"], "observations without a new best (and ``search_patience_growth``) that end the growth."
)
SEARCH_PATIENCE_GROWTH = knob(
    "search_patience_growth", 1.6, CHECKS["up"],
    "lr growth since the best smoothed loss that, with ``search_patience``, ends the growth (>= 1).",
)
SEARCH_BACKOFF = knob(
    "search_backoff", 2.0, CHECKS["up"],
    "the search lands at the lr of the best smoothed loss (lag-corrected) divided by this (>= 1).",
)
SEARCH_MAX_GROWTH = knob(
    "search_max_growth", 1000.0, CHECKS["up"], "most growth over ``base_lr`` (>= 1); ``max_lr`` also bounds it."
)
SEARCH_MAX_SAMPLES = knob(
    "search_max_samples", 150.0, CHECKS["ge1"], "observations after which the search ends whatever it has seen (>= 1)."
)

_N0 = 5.0  # observations averaged into the start level
_WINSOR = 3.0  # values (and differences) are winsorised at this many noise sds once n > 4
_TOO_HIGH_RUN = 3.0  # consecutive tests above the start level before backing off
_SHRINK = 1.2  # lr factor per observation while backing off from a too-high start
_MAX_SHRINK = 12.0  # most observations of backing off
_EXPLODE = 3.0  # a loss above y_1 + 3|y_1| (and 10 noise sds) is a blow-up: the lr is far too high

WARMING, RESPONDING, BACKING_OFF, DONE = 0.0, 1.0, 2.0, 3.0
PHASES = ("warming", "responding", "backing off", "done")

SLOTS = (
    Slot("phase"), Slot("n"), Slot("m"), Slot("m_pow", init=1.0), Slot("d2"), Slot("y_prev"), Slot("sigma"),
    Slot("level0"), Slot("best", init=1e30), Slot("s_best"), Slot("since"), Slot("s"), Slot("n_back"),
    Slot("ref"), Slot("n_high"), Slot("landed"), Slot("started"), Slot("y_first"), Slot("busy", init=1.0),
    Slot("n_bad"),
)


def search_range(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    r"""Range: an lr range test inside the run; grows the lr geometrically from a warm start until the loss stops improving.

    The lr range test (Smith, 2017, "Cyclical Learning Rates for Training
    Neural Networks", WACV, Sec. 3.3; fastai's ``lr_find``) run inside the real
    run, as the adaptive warm-up of Kim et al. (2021, "Automated Learning Rate
    Scheduler for Large-batch Training", ICML AutoML workshop) does: the lr
    starts at ``base_lr * start`` at the first supplied loss (signal-less
    updates before it leave ``base_lr``) and grows by ``g_n = g^(1/(1 + n/tau))`` per
    observation (``n`` observations so far; fast at first, about 10x within 25
    observations from ``g = 1.12``, slower as the edge nears so the stop is
    precise) while the loss keeps improving, and lands below the lr where it
    stopped improving. It reads the loss only; the decisions use a robust
    smoothed loss ``m_n`` (EMA with decay ``beta``, bias-corrected, each value
    winsorised at ``m_{n-1} +- 3 sigma``, so one spike moves it by at most
    ``3 sigma (1 - beta)``; it follows a trend steeper than that per step with
    a lag, which delays the stop: a margin) and its standard error
    ``se = sigma * sqrt((1 - beta)/(1 + beta))``, with the noise ``sigma^2 =
    EMA((y_n - y_{n-1})^2) / 2`` from first differences (winsorised alike, so a
    trend or one spike does not inflate it). ``L0`` is the mean of the first 5
    observations, ``m*`` the best ``m_n`` since, reached at log-scale ``s*``.

    Phases (``n >= min_samples`` before any test):

    * *warming*: grow while ``m_n <= L0 + se``; once ``m_n < L0 - z_progress*se``
      the loss responds. Three tests in a row with ``m_n > L0 + z_rise*se``, or
      a blow-up (a raw loss ``y_n > y_1 + 3|y_1|`` that is also more than 10
      noise sds above ``y_1``, from the third observation), mean the start is
      too high: *backing off*. No response by ``max_samples``: back to the
      start lr (nothing was learnt).
    * *responding*: grow; stop at a rise ``m_n > m* + z_rise*se``, a blow-up, or
      a plateau (no new best for ``patience`` observations while the lr grew by
      ``patience_growth``), and land at ``s* - lag*log(g_n) - log(backoff)``
      with ``lag = beta/(1 - beta)`` (the smoothing's delay): the lr of the
      best loss, divided by ``backoff``.
    * *backing off*: divide the lr by ``backoff``, then by 1.2 per observation
      until the raw loss falls again with its smoothed level back below where
      the backing off began (at most 12 observations).
    * *done*: the search adds nothing more; the other rules act (the
      ``anneal`` rule's legs start here).

    A supplied non-finite loss holds the search (no growth, no test; a
    transient NaN from one bad batch changes nothing); three in a row land
    (responding) or back off (warming, or from the backing off go on
    shrinking). The search also ends at ``max_samples`` observations (landing
    as above when responding), and holds where growth stops, at
    ``min(max_growth, max_lr/base_lr)``. When the run reports a reward
    or a KL (RL fine-tuning) the search does not run: there the KL budget, not
    the objective's stability, bounds the lr, and growth would push the KL up
    (``kl_rule="target"`` steers it); one first seen after the search started
    (loss-only log rows before it) undoes the search's factor, back to
    ``base_lr``. Deterministic given the signals; needs no
    step count.
    """
    sl = ctx.slots
    rl = ever_seen(xp, ctx.signals.get("reward"), ctx.signals.get("kl"))
    # RL seen after the search started (loss-only rows first): undo what it did, back to base_lr
    rl_off = xp.logical_and(rl, xp.logical_and(sl["phase"] < 2.5, sl["started"] > 0.5))
    phase = xp.where(rl, DONE, sl["phase"])
    ok = obs.ok
    # the first supplied loss (finite or not; signal-less updates before it change nothing): jump to the start
    first = xp.logical_and(xp.logical_and(sl["started"] < 0.5, xp.logical_not(rl)), either(xp, ok, obs.bad))
    l_start = knobs.log_start
    s = xp.where(first, l_start, sl["s"])
    s_best_in = xp.where(first, l_start, sl["s_best"])
    searching = phase < 2.5
    bad = xp.logical_and(searching, obs.bad)
    # a NaN/inf loss holds the search; _TOO_HIGH_RUN of them in a row end it (back off, or land)
    n_bad = xp.where(bad, sl["n_bad"] + 1.0, xp.where(ok, 0.0, sl["n_bad"]))
    bad_run = xp.logical_and(bad, n_bad >= _TOO_HIGH_RUN)
    y = obs.x
    b = knobs.beta
    n = xp.where(ok, sl["n"] + 1.0, sl["n"])
    # robust smoothed loss and noise
    prev_hat = sl["m"] / xp.clip(1.0 - sl["m_pow"], TINY, 1.0)
    lim = _WINSOR * sl["sigma"]
    late = n > 4.5
    yw = xp.where(late, xp.clip(y, prev_hat - lim, prev_hat + lim), y)
    m = xp.where(ok, b * sl["m"] + (1.0 - b) * yw, sl["m"])
    m_pow = xp.where(ok, sl["m_pow"] * b, sl["m_pow"])
    mhat = m / xp.clip(1.0 - m_pow, TINY, 1.0)
    d = xp.where(n > 1.5, y - sl["y_prev"], 0.0)
    dlim = lim * math.sqrt(2.0)
    d = xp.where(late, xp.clip(d, -dlim, dlim), d)
    d2 = xp.where(xp.logical_and(ok, n > 1.5), b * sl["d2"] + (1.0 - b) * d * d, sl["d2"])
    d2hat = d2 / xp.clip(1.0 - m_pow / xp.clip(b, TINY, 1.0), TINY, 1.0)
    sigma = xp.where(ok, xp.sqrt(xp.clip(d2hat * 0.5, 0.0, 1e30)), sl["sigma"])
    se = sigma * xp.sqrt((1.0 - b) / (1.0 + b))
    y_first = xp.where(xp.logical_and(ok, n < 1.5), y, sl["y_first"])
    jump = y - y_first
    explode = xp.logical_and(
        xp.logical_and(ok, n > 2.5),
        xp.logical_and(jump > _EXPLODE * xp.abs(y_first), jump > 10.0 * sl["sigma"]),
    )
    in0 = xp.logical_and(ok, n <= _N0 + 0.5)
    level0 = xp.where(in0, sl["level0"] + (y - sl["level0"]) / xp.clip(n, 1.0, 1e30), sl["level0"])
    tested = xp.logical_and(ok, n >= knobs.min_samples)
    warming = phase < 0.5
    responding = xp.logical_and(phase > 0.5, phase < 1.5)
    growing = phase < 1.5
    backing = xp.logical_and(phase > 1.5, searching)
    improved = xp.logical_and(xp.logical_and(ok, mhat < sl["best"]), xp.logical_and(growing, n > _N0 - 0.5))
    best = xp.where(improved, mhat, sl["best"])
    s_best = xp.where(improved, s, s_best_in)
    since = xp.where(improved, 0.0, xp.where(ok, sl["since"] + 1.0, sl["since"]))
    rise = xp.logical_and(tested, mhat > best + knobs.z_rise * se)
    high = xp.logical_and(tested, mhat > level0 + knobs.z_rise * se)
    falls = xp.logical_and(tested, mhat < level0 - knobs.z_progress * se)
    lg = knobs.log_growth / (1.0 + sl["n"] / knobs.tau)
    lag = b / (1.0 - b)
    s_max = xp.clip(
        ctx.config.log_of("max_lr") - ctx.config.log_of("base_lr"), -1e30, knobs.log_max_growth
    )
    at_max = xp.logical_and(ok, s >= s_max - 1e-6)
    l_back = knobs.log_backoff
    land = s_best - lg * lag - l_back
    n_high = xp.where(xp.logical_and(warming, tested), xp.where(high, sl["n_high"] + 1.0, 0.0), sl["n_high"])
    to_back = xp.logical_and(warming, either(xp, n_high >= _TOO_HIGH_RUN, explode))
    to_resp = xp.logical_and(xp.logical_and(warming, falls), xp.logical_not(high))
    plateau = xp.logical_and(
        xp.logical_and(ok, since >= knobs.patience), s - s_best >= knobs.log_patience_growth
    )
    too_long = xp.logical_and(growing, n >= knobs.max_samples)
    stop_resp = xp.logical_and(responding, either(xp, either(xp, either(xp, rise, plateau), too_long), explode))
    # growth capped, or no response at all by max_samples: hold the cap, or go back to the start (nothing learnt)
    stop_cap = xp.logical_and(growing, xp.logical_and(at_max, xp.logical_not(stop_resp)))
    unanswered = xp.logical_and(warming, xp.logical_and(too_long, xp.logical_not(at_max)))
    finish = either(xp, either(xp, stop_resp, stop_cap), unanswered)
    target = xp.where(unanswered, l_start, xp.where(stop_cap, s, land))
    may_grow = either(xp, xp.logical_not(warming), mhat <= level0 + se)
    inc_grow = xp.where(xp.logical_and(ok, may_grow), lg, 0.0)
    inc_grow = xp.where(finish, target - s, inc_grow)
    inc_grow = xp.where(to_back, -l_back, inc_grow)
    n_back = xp.where(xp.logical_and(backing, either(xp, ok, bad)), sl["n_back"] + 1.0, sl["n_back"])
    # recovered: the raw loss falls again and its smoothed level is back below where the backing off began
    recovered = xp.logical_and(
        xp.logical_and(xp.logical_and(backing, ok), n_back >= 2.0),
        xp.logical_and(y < sl["y_prev"], mhat < sl["ref"]),
    )
    end_back = either(xp, recovered, xp.logical_and(backing, n_back >= _MAX_SHRINK))
    shrink = xp.logical_and(xp.logical_and(backing, either(xp, ok, bad)), xp.logical_not(end_back))
    inc_back = xp.where(shrink, -math.log(_SHRINK), 0.0)
    inc = xp.where(growing, inc_grow, xp.where(backing, inc_back, 0.0))
    inc = xp.where(xp.logical_and(bad_run, growing), xp.where(responding, land - s, -l_back), inc)
    back_bad = xp.logical_and(bad_run, warming)
    new_phase = xp.where(to_resp, RESPONDING, phase)
    new_phase = xp.where(either(xp, to_back, back_bad), BACKING_OFF, new_phase)
    new_phase = xp.where(either(xp, finish, xp.logical_and(bad_run, responding)), DONE, new_phase)
    new_phase = xp.where(end_back, DONE, new_phase)
    ref = xp.where(to_back, mhat, xp.where(back_bad, xp.where(n > 0.5, mhat, 1e30), sl["ref"]))
    landed = xp.where(xp.logical_and(searching, new_phase > 2.5), s + inc, sl["landed"])
    new = {
        "phase": new_phase, "n": n, "m": m, "m_pow": m_pow, "d2": d2, "y_prev": xp.where(ok, y, sl["y_prev"]),
        "sigma": sigma, "level0": level0, "best": best, "s_best": s_best, "since": since,
        "s": xp.where(rl_off, 0.0, s + inc),
        "n_back": n_back, "ref": ref, "n_high": n_high, "landed": landed,
        "started": xp.where(rl_off, 0.0, xp.where(first, 1.0, sl["started"])),  # 0 after rl_off: the event says "off"
        "y_first": y_first,
        "busy": xp.where(searching, 1.0, 0.0),  # searching at this step (the landing step included)
        "n_bad": n_bad,
    }
    out = xp.where(searching, xp.where(first, inc + l_start, inc), xp.where(rl_off, -sl["s"], 0.0))
    return out, new


def _busy(slots: Any) -> Any:
    return slots["busy"] > 0.5



# --------------------------------------------------------------------------- explanation (diagnostics)



def _explain_range(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> dict[str, Any]:
    """The search's state: ``phase`` (0 warming, 1 responding, 2 backing off, 3 done), ``observations``,
    ``smoothed_loss`` (the robust ``m_n``), ``best_loss`` (``m*``), ``start_loss`` (``L0``) and ``noise`` (``sigma``)."""
    sl = ctx.slots
    mhat = sl["m"] / xp.clip(1.0 - sl["m_pow"], TINY, 1.0)
    return {
        "phase": sl["phase"],
        "observations": sl["n"],
        "smoothed_loss": mhat,
        "best_loss": xp.where(sl["best"] < 1e29, sl["best"], mhat),  # the 1e30 sentinel before any best
        "start_loss": sl["level0"],
        "noise": sl["sigma"],
    }


def _range_event(xp: Any, obs: Any, knobs: Any, ctx: RuleContext, outcome: Any) -> Any:
    """A phase change: ``responding``, ``backing_off``, ``landed`` (done, the lr set), or ``off`` (done without searching: RL)."""
    new, old = outcome.slots["phase"], ctx.slots["phase"]
    code = xp.where(new > 2.5, xp.where(outcome.slots["started"] > 0.5, 3, 4), xp.where(new > 1.5, 2, 1))
    return xp.where(new > old + 0.5, code, 0)

register(
    Rule(
        "search", "range", "increment", "loss", search_range,
        {"start": SEARCH_START, "growth": SEARCH_GROWTH, "tau": SEARCH_TAU, "beta": SEARCH_BETA,
         "min_samples": SEARCH_MIN_SAMPLES, "z_rise": SEARCH_Z_RISE, "z_progress": SEARCH_Z_PROGRESS,
         "patience": SEARCH_PATIENCE, "patience_growth": SEARCH_PATIENCE_GROWTH, "backoff": SEARCH_BACKOFF,
         "max_growth": SEARCH_MAX_GROWTH, "max_samples": SEARCH_MAX_SAMPLES},
        slots=SLOTS,
        formula=(
            "from `base·start`, `η ← η·g^(1/(1+n/τ))` per observation while the robust smoothed loss "
            "improves; on a rise (`> best + z_rise·se`) or a plateau, land at the lr of the best loss "
            "(lag-corrected) / `backoff`; a too-high start backs off; off when a reward or KL is observed "
            "(lr range test in the run, Smith 2017)"
        ),
        reads=("reward", "kl"),
        busy=_busy,
        events=("responding", "backing_off", "landed", "off"),
        event=_range_event,
        explain=_explain_range,
    )
)
