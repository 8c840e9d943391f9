"""``lr_rule="evidence"``: move the lr only on evidence that it is too low or too high (the recommended rule)."""

from __future__ import annotations

import math
from typing import Any

from adaptive_sched._rules import CHECKS, Rule, RuleContext, Slot, knob, register
from adaptive_sched.rules._math import TINY, either, ever_seen, warmup_factor

START = knob(
    "evidence_start", 0.25, CHECKS["positive"],
    "the first update's lr as a multiple of ``base_lr`` (> 0): a warm start, judged before ``base_lr`` is reached.",
)
RAMP = knob("evidence_ramp", 10.0, CHECKS["ge1"], "updates from the warm start to ``base_lr`` when nothing says too high (>= 1).")
BETA_COS = knob("evidence_beta_cos", 0.9, CHECKS["beta"], "EMA decay of the gradient-direction statistics, in [0, 1).")
MIN_N = knob(
    "evidence_min_samples", 5.0, CHECKS["ge1"], "``grad_cos`` readings (since the last cut) before the direction decides (>= 1)."
)
Z = knob(
    "evidence_z", 2.0, CHECKS["nonneg"],
    "evidence threshold: the mean ``grad_cos`` this many standard errors from 0 (>= 0).",
)
DEAD_ZONE = knob(
    "evidence_dead_zone", 0.1, CHECKS["nonneg"],
    "``|mean grad_cos|`` below this moves nothing (a good lr reads about 0 there; >= 0).",
)
GROWTH = knob(
    "evidence_growth", 0.2, CHECKS["nonneg"],
    "log-lr growth per update per unit of mean ``grad_cos`` above the dead zone (>= 0).",
)
MAX_GROWTH = knob("evidence_max_growth", 0.05, CHECKS["nonneg"], "most log-lr growth per update (>= 0; 0.05: 10x in 46 updates).")
DROP_REVERSAL = knob("evidence_drop_reversal", 0.7, CHECKS["down"], "lr factor when the steps reverse (in (0, 1]).")
DROP_RISE = knob("evidence_drop_rise", 0.5, CHECKS["down"], "lr factor when the loss rises significantly (in (0, 1]).")
DROP_BAD = knob("evidence_drop_bad", 0.5, CHECKS["down"], "lr factor per non-finite loss or gradient norm (in (0, 1]).")
Z_RISE = knob(
    "evidence_z_rise", 3.0, CHECKS["nonneg"],
    "a rise of the smoothed loss this many standard errors above its slow average is evidence (>= 0).",
)
HOLD = knob("evidence_hold", 20.0, CHECKS["nonneg"], "updates without growth after a loss-rise or non-finite cut (>= 0).")
SETTLE = knob(
    "evidence_settle", 0.05, CHECKS["nonneg"],
    "log-lr given back per update, toward ``base_lr`` and never below it, while the lr is above ``base_lr``, the mean "
    "``grad_cos`` is below 0 and the loss does not fall significantly (>= 0; 0.05: the growth cap).",
)

_BETA_Y = 0.8  # the robust loss EMA (the range test's estimator)
_BETA_SLOW = 0.95  # the slow loss EMA whose minimum a rise is measured from
_SE_GAP = math.sqrt((1.0 - _BETA_Y) / (1.0 + _BETA_Y) + (1.0 - _BETA_SLOW) / (1.0 + _BETA_SLOW))  # per unit of noise
_RISE_RUN = 3.0  # observations in a row above the margin that make a rise
_MIN_RISE = 1e-3  # a rise is at least 0.1% of the level: a flat loss never "rises"
_N_LOSS = 10.0  # losses before a rise is tested
_FAR = math.log(10.0)  # "far above base_lr"

SLOTS = (
    Slot("s"), Slot("ramping", init=1.0), Slot("started"),
    Slot("nc"), Slot("cpow", init=1.0), Slot("cm"), Slot("cq"),
    Slot("ny"), Slot("ypow", init=1.0), Slot("ym"), Slot("d2"), Slot("yprev"), Slot("sig_y"),
    Slot("ys"), Slot("yspow", init=1.0), Slot("hold"), Slot("n_rise"), Slot("why", "int32"), Slot("rl", late=True),
)  # fmt: skip
EVENTS = ("cut_reversal", "cut_loss_rose", "cut_not_finite", "above_base_lr", "far_above_base_lr",
          "min_lr_while_improving")  # fmt: skip
"""Event names: a cut and its evidence (steps reversed, the loss rose, a value not finite); the lr crossing
``base_lr`` upward, or 10x ``base_lr`` (far above where it started); the lr reaching ``min_lr`` while the loss
still falls (a run ending there is worth a look)."""


def _max(xp: Any, a: Any, b: Any) -> Any:
    return xp.where(a > b, a, b)


def _min(xp: Any, a: Any, b: Any) -> Any:
    return xp.where(a < b, a, b)


def _debiased(xp: Any, m: Any, decay_pow: Any) -> Any:
    """An EMA ``m`` bias-corrected: ``m / (1 - b^n)`` (the denominator floored at 1e-6)."""
    return m / xp.clip(1.0 - decay_pow, 1e-6, 1.0)


def _cos_stats(xp: Any, sl: Any, knobs: Any) -> tuple[Any, Any]:
    """The mean ``grad_cos`` (bias-corrected EMA) and its z statistic, from the slots."""
    b = knobs.beta_cos
    den = xp.clip(1.0 - sl["cpow"], 1e-6, 1.0)
    mean, sq = sl["cm"] / den, sl["cq"] / den
    var = xp.clip(sq - mean * mean, 1e-12, 4.0)
    # the sd of a bias-corrected EMA of n iid readings: sqrt(var (1-b)(1+b^n) / ((1+b)(1-b^n)))
    se = xp.sqrt(var * (1.0 - b) * (1.0 + sl["cpow"]) / ((1.0 + b) * den))
    return mean, mean / se


def _s_before(xp: Any, slots: Any, knobs: Any, ctx: RuleContext) -> Any:
    """The log-factor this update starts from: the slot's, or before the first update the warm start
    ``log(start)``, or 0 under a user's warmup (which starts lower, and would otherwise multiply with it)."""
    first = xp.where(ctx.config.warmup_steps > 0.0, 0.0, knobs.log_start)
    return xp.where(slots["started"] > 0.5, slots["s"], first)


def evidence(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    r"""Evidence: the lr moves only when the gradient's direction or the loss says it is too low or too high.

    Reads the loss, ``grad_cos`` (:class:`~adaptive_sched.Signals`: the cosine
    between this step's gradient and the previous update, negated) and the
    gradient norm. With ``c̄`` the bias-corrected EMA (decay ``beta_cos``) of
    ``grad_cos`` since the last cut and ``z = c̄ / se(c̄)``:

    * *warm start*: the first update runs at ``base_lr * start`` (0.25) and
      the lr rises geometrically to ``base_lr`` over the next ``ramp`` (10)
      updates unless a cut fires first: no update runs at a ``base_lr`` nothing has
      judged. With a user's warmup (``warmup_steps > 0``) that warmup is the
      start instead (the two do not multiply).
    * *grow* while the steps keep agreeing, ``z > z`` and ``c̄ > dead_zone``
      (the normalised hypergradient says the lr is too small; Baydin et al.,
      2018, "Online Learning Rate Adaptation with Hypergradient Descent",
      ICLR): ``log lr += min(growth * (c̄ - dead_zone), max_growth)``. Not
      during the warm start, a user's warmup (``t <= warmup_steps``), a
      cooldown, ``hold`` updates after a rise or non-finite cut, or once a
      reward or a KL is observed (RL fine-tuning: there the KL budget bounds
      the lr, and ``kl_rule="target"`` steers it; the objective moves with the
      policy's own data, so only non-finite values cut there either; and a
      warm start would judge nothing: the lr is ``base_lr`` from the first
      update with a reward or a KL).
    * *cut* on positive evidence only, the strongest that applies: the steps
      reverse, ``z < -z`` and ``c̄ < -dead_zone`` (overshoot; Pflug's test of
      the sign of consecutive gradients' inner products, Chee & Toulis, 2018,
      "Convergence diagnostics for stochastic gradient descent with constant
      learning rate", AISTATS): ``lr *= drop_reversal``; the loss rises, a
      robust smoothed loss (EMA 0.8, winsorised at 3 noise sds or, if more, the last loss's distance
      from it: a spike is clipped, a lasting shift passes; the noise from
      first differences as the range test's) above a slow EMA (0.95) of it
      by ``max(z_rise * se, 0.1% of it)`` (``se`` of the two EMAs' gap) on 3
      observations in a row, unless ``c̄`` says the lr is too low:
      ``lr *= drop_rise`` (the slow EMA restarts at the fast one); a non-finite gradient norm or an infinite
      loss: ``lr *= drop_bad``. A cut restarts the direction statistics.
    * A stalled loss never moves the lr below ``base_lr``: no cut rests on the
      absence of progress, so a slow, steady loss keeps its lr. Above
      ``base_lr`` (after growth), the excess lasts only while evidence supports
      it: when the steps lean back (``c̄ < 0``, past the equilibrium) and the
      fast loss EMA is not significantly below the slow one (a noise floor,
      which a higher lr raises), ``log lr -= min(settle, log(lr / base_lr))``:
      back toward ``base_lr``, never below it. Measured on an ill-conditioned
      noisy quadratic 10x above its base lr (``bench_heldout_tasks.py``): the
      lr had grown to 14x and stayed on the noise floor (3.5x constant's final
      value); now it comes back (0.7x constant's).
    * Once a reward or a KL is observed the rule is *busy*
      (:attr:`Rule.busy`): it cannot judge the lr there (it neither grows nor
      cuts on the direction or the loss), so a cooldown planned by the horizon
      waits too. Measured on the bench's two RL tasks, the horizon's decay
      ended worse than a constant lr at a too-low lr (x0.1: mean reward -0.39
      against -0.34) and lowered the reward at every grid lr on one of them.

    Undefined readings (a NaN ``grad_cos``: a zero norm, the first step; a
    NaN loss) hold everything they feed. The lr stays within
    ``[min_lr, max_lr]`` (the factor is clamped with them). Deterministic given
    the signals; needs no step count, but respects ``warmup_steps`` and a
    cooldown (``recommended(total_steps=...)``).
    """
    sl = ctx.slots
    cos_v, gn_v = ctx.signals.get("grad_cos"), ctx.signals.get("grad_norm")
    rl_v = [ctx.signals.get(n) for n in ("reward", "kl")]
    s = _s_before(xp, sl, knobs, ctx)
    s_lo = ctx.config.log_of("min_lr") - ctx.config.log_of("base_lr")
    s_hi = ctx.config.log_of("max_lr") - ctx.config.log_of("base_lr")

    # ---- the gradient's direction (held when undefined)
    c_ok = cos_v.ok if cos_v is not None else False
    c = xp.clip(cos_v.x, -1.0, 1.0) if cos_v is not None else 0.0
    b = knobs.beta_cos
    cm = xp.where(c_ok, b * sl["cm"] + (1.0 - b) * c, sl["cm"])
    cq = xp.where(c_ok, b * sl["cq"] + (1.0 - b) * c * c, sl["cq"])
    cpow = xp.where(c_ok, sl["cpow"] * b, sl["cpow"])
    nc = xp.where(c_ok, sl["nc"] + 1.0, sl["nc"])
    mean, z = _cos_stats(xp, {"cm": cm, "cq": cq, "cpow": cpow}, knobs)
    judged = xp.logical_and(c_ok, nc >= knobs.min_samples)
    agree = xp.logical_and(judged, xp.logical_and(z > knobs.z, mean > knobs.dead_zone))
    reverse = xp.logical_and(judged, xp.logical_and(z < -knobs.z, mean < -knobs.dead_zone))
    says_low = xp.logical_and(mean > knobs.dead_zone, nc >= knobs.min_samples)

    # ---- the loss: a robust fast EMA, its noise, and a slow EMA a rise is measured from
    y_ok = obs.ok
    y = obs.x
    ny = xp.where(y_ok, sl["ny"] + 1.0, sl["ny"])
    prev_hat = _debiased(xp, sl["ym"], sl["ypow"])
    lim = 3.0 * sl["sig_y"]
    late = ny > 4.5
    # Winsorised at 3 noise sds from the level, widened to the last loss's own distance from it: a one-step spike
    # is clipped, a lasting shift (a fast fall, a rise) passes from its second observation (the noise sd alone
    # would shrink on a flat floor while the level still lags, and the level would never catch up).
    wide = _max(xp, lim, xp.abs(sl["yprev"] - prev_hat))
    yw = xp.where(late, xp.clip(y, prev_hat - wide, prev_hat + wide), y)
    ym = xp.where(y_ok, _BETA_Y * sl["ym"] + (1.0 - _BETA_Y) * yw, sl["ym"])
    ypow = xp.where(y_ok, sl["ypow"] * _BETA_Y, sl["ypow"])
    yhat = _debiased(xp, ym, ypow)
    dy = xp.where(ny > 1.5, y - sl["yprev"], 0.0)
    dy = xp.where(late, xp.clip(dy, -lim * math.sqrt(2.0), lim * math.sqrt(2.0)), dy)
    d2 = xp.where(xp.logical_and(y_ok, ny > 1.5), _BETA_Y * sl["d2"] + (1.0 - _BETA_Y) * dy * dy, sl["d2"])
    d2hat = _debiased(xp, d2, ypow / _BETA_Y)
    sig_y = xp.where(y_ok, xp.sqrt(xp.clip(d2hat * 0.5, 0.0, 1e30)), sl["sig_y"])
    ys = xp.where(y_ok, _BETA_SLOW * sl["ys"] + (1.0 - _BETA_SLOW) * yw, sl["ys"])
    yspow = xp.where(y_ok, sl["yspow"] * _BETA_SLOW, sl["yspow"])
    yshat = _debiased(xp, ys, yspow)
    tested = xp.logical_and(y_ok, ny >= _N_LOSS)
    # A rise: the fast EMA above the slow one by z_rise standard errors of their gap, _RISE_RUN observations in a
    # row. Under a stationary noisy loss the gap is centred on 0 (a running minimum would not be: the minimum of a
    # noisy series sits below its mean, and a test against it fires every few hundred steps on noise alone).
    margin = _max(xp, knobs.z_rise * sig_y * _SE_GAP, _MIN_RISE * xp.abs(yshat))
    above = xp.logical_and(xp.logical_and(tested, yhat > yshat + margin), xp.logical_not(says_low))
    n_rise = xp.where(y_ok, xp.where(above, sl["n_rise"] + 1.0, 0.0), sl["n_rise"])
    rise = xp.logical_and(above, n_rise >= _RISE_RUN)
    # a non-finite gradient norm or an infinite loss (a NaN loss is "not observed", as everywhere)
    bad = either(xp, gn_v.bad, obs.inf) if gn_v is not None else obs.inf

    # ---- decisions. RL fine-tuning (a reward or a KL observed): the objective moves with the policy's own data,
    # so neither a loss rise nor a reversal is evidence about the lr there; only non-finite values cut, and the
    # KL budget (kl_rule="target") is the RL brake.
    rl = ever_seen(xp, *rl_v)
    if rl is not False:
        reverse = xp.logical_and(reverse, xp.logical_not(rl))
        rise = xp.logical_and(rise, xp.logical_not(rl))
    too_high = either(xp, either(xp, reverse, rise), bad)
    ramping = sl["ramping"] > 0.5
    ramp_rate = -knobs.log_start / knobs.ramp
    ramp_on = xp.logical_and(xp.logical_and(ramping, xp.logical_not(too_high)), sl["started"] > 0.5)  # not the first
    ramp_inc = xp.where(ramp_on, xp.clip(-s, 0.0, ramp_rate), 0.0)
    if rl is not False:  # RL: nothing here judges the lr, so a warm start judges nothing either: base_lr at once
        ramp_inc = xp.where(xp.logical_and(xp.logical_and(rl, ramping), xp.logical_not(too_high)), xp.clip(-s, 0.0, 1e30), ramp_inc)
    blocked = either(xp, either(xp, sl["hold"] > 0.5, ctx.t <= ctx.config.warmup_steps), either(xp, ramping, too_high))
    blocked = either(xp, either(xp, blocked, ctx.cooling), rl)
    g = xp.clip(knobs.growth * (mean - knobs.dead_zone), 0.0, knobs.max_growth)
    grow = xp.where(xp.logical_and(agree, xp.logical_not(blocked)), g, 0.0)
    cut_cos = xp.where(xp.logical_and(reverse, s > s_lo), _max(xp, knobs.log_drop_reversal, s_lo - s), 0.0)
    cut = _min(xp, _min(xp, cut_cos, xp.where(rise, knobs.log_drop_rise, 0.0)), xp.where(bad, knobs.log_drop_bad, 0.0))
    # The bounds as the core's anti-windup clamp sees them: with a warmup factor w_t on the lr, the factor of
    # this rule lies in [min_lr / (base w_t), max_lr / (base w_t)], so its state never drifts from the core's.
    warm = warmup_factor(xp, ctx.config.warmup_steps, ctx.t)
    log_warm = xp.clip(xp.log(xp.clip(warm, TINY, 1.0)), s_lo - 1.0, s_hi + 1.0)
    # Growth above base_lr lasts while evidence supports it: once the steps lean back and the loss no longer falls
    # significantly (a noise floor, which a higher lr raises), the excess is given back toward base_lr.
    falling = xp.logical_and(tested, yhat < yshat - margin)
    past = xp.logical_and(mean < 0.0, nc >= knobs.min_samples)  # the steps lean back: past the equilibrium
    idle = xp.logical_and(xp.logical_and(y_ok, past), xp.logical_not(falling))
    settle = xp.where(xp.logical_and(idle, s > 0.0), -xp.clip(s, 0.0, knobs.settle), 0.0)
    s_new = xp.clip(s + ramp_inc + grow + cut + settle, s_lo - log_warm, s_hi - log_warm)
    # which evidence the cut rests on (the strongest, as applied): 1 reversal, 2 loss rise, 3 not finite
    why = xp.where(cut < 0.0, xp.where(xp.logical_and(bad, cut >= knobs.log_drop_bad), 3,
                                       xp.where(xp.logical_and(rise, cut >= knobs.log_drop_rise), 2, 1)), 0)  # fmt: skip
    new = {
        "why": why,
        "started": 1.0,
        "s": s_new,
        "ramping": xp.where(either(xp, too_high, s_new >= 0.0), 0.0, sl["ramping"]),
        "nc": xp.where(too_high, 0.0, nc), "cpow": xp.where(too_high, 1.0, cpow),
        "cm": xp.where(too_high, 0.0, cm), "cq": xp.where(too_high, 0.0, cq),
        "ny": ny, "ypow": ypow, "ym": ym, "d2": d2, "yprev": xp.where(y_ok, y, sl["yprev"]), "sig_y": sig_y,
        "ys": xp.where(rise, ym * (1.0 - yspow) / xp.clip(1.0 - ypow, 1e-6, 1.0), ys), "yspow": yspow,
        "n_rise": xp.where(rise, 0.0, n_rise),
        "hold": xp.where(either(xp, rise, bad), knobs.hold, xp.clip(sl["hold"] - 1.0, 0.0, 1e30)),
        # RL fine-tuning: the lr is not judged here, so a planned decay waits too (Rule.busy)
        "rl": xp.where(rl, 1.0, 0.0) if rl is not False else 0.0,
    }  # fmt: skip
    return s_new - sl["s"], new


def _evidence_event(xp: Any, obs: Any, knobs: Any, ctx: RuleContext, outcome: Any) -> Any:
    """This update's decision: a cut (by its evidence), crossing ``base_lr`` or 10x it, or ``min_lr`` reached with the loss falling."""
    old, new = ctx.slots, outcome.slots
    s0, s1 = _s_before(xp, old, knobs, ctx), new["s"]
    s_lo = ctx.config.log_of("min_lr") - ctx.config.log_of("base_lr")
    falling = _debiased(xp, new["ys"], new["yspow"]) > _debiased(xp, new["ym"], new["ypow"])
    floor = xp.logical_and(xp.logical_and(s1 <= s_lo + 1e-6, s0 > s_lo + 1e-6), falling)
    code = xp.where(floor, 6, new["why"])
    code = xp.where(xp.logical_and(s0 < _FAR, s1 >= _FAR), 5, code)
    return xp.where(xp.logical_and(s0 <= 0.0, s1 > 0.0), 4, code)


def _explain(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> dict[str, Any]:
    """``mean_cos`` and ``cos_z`` (the direction's evidence), ``cos_samples``, ``smoothed_loss`` (fast), ``slow_loss``, ``hold``."""
    sl = ctx.slots
    mean, z = _cos_stats(xp, sl, knobs)
    seen = sl["nc"] > 0.5
    return {
        "mean_cos": xp.where(seen, mean, 0.0),
        "cos_z": xp.where(seen, z, 0.0),
        "cos_samples": sl["nc"],
        "smoothed_loss": _debiased(xp, sl["ym"], sl["ypow"]),
        "slow_loss": _debiased(xp, sl["ys"], sl["yspow"]),
        "hold": sl["hold"],
    }


register(
    Rule(
        "lr", "evidence", "increment", "loss", evidence,
        {"start": START, "ramp": RAMP, "beta_cos": BETA_COS, "min_samples": MIN_N, "z": Z, "dead_zone": DEAD_ZONE,
         "growth": GROWTH, "max_growth": MAX_GROWTH, "drop_reversal": DROP_REVERSAL, "drop_rise": DROP_RISE,
         "drop_bad": DROP_BAD, "z_rise": Z_RISE, "hold": HOLD, "settle": SETTLE},
        slots=SLOTS,
        formula=(
            "warm start at `base·start`, up to `base` in `ramp` updates; grow `min(growth·(c̄−dead), max)` while the "
            "mean `grad_cos` is significantly above `dead_zone`; cut ×`drop_reversal` when it is significantly below "
            "`−dead_zone`, ×`drop_rise` on a significant loss rise, ×`drop_bad` on non-finite values; above `base`, "
            "give back `settle` an update while `c̄ < 0` and the loss does not fall; a stall never cuts below `base` "
            "(hypergradient, Baydin et al. 2018; Pflug's test, Chee & Toulis 2018)"
        ),
        reads=("grad_cos", "grad_norm", "reward", "kl"),
        busy=lambda new: new["rl"] > 0.5,
        events=EVENTS,
        event=_evidence_event,
        explain=_explain,
    )
)
