"""The ``lr`` family: loss-, gradient- and clock-driven lr rules."""

from __future__ import annotations

import math
from typing import Any

from adaptive_sched._rules import CHECKS, Family, Rule, RuleContext, Slot, knob, register, register_family
from adaptive_sched.rules._math import REL_EPS, SIGNAL_LIMIT, TINY, trend_step, variance_factor

FAMILY = register_family(Family("lr", "loss-, gradient- or clock-driven lr rule"))

DECAY_K = knob("decay_k", 1e-3, CHECKS["nonneg"], "``k`` of ``loss_decay``.")
TREND_UP = knob("trend_up", 1.01, CHECKS["up"], "lr factor per step when the smoothed loss improves (>= 1).")
TREND_DOWN = knob("trend_down", 0.99, CHECKS["down"], "lr factor per step when it does not (in (0, 1]).")
TREND_THRESHOLD = knob(
    "trend_threshold", 1e-4, CHECKS["nonneg"], "relative improvement needed to count as improving (>= 0)."
)
VARIANCE_K = knob("variance_k", 1.0, CHECKS["nonneg"], "strength of the loss ``variance`` rule.")
GRAD_NORM_POWER = knob("grad_norm_power", 1.0, CHECKS["nonneg"], "exponent ``p`` of the ``grad_norm`` rule.")
GRAD_NORM_REF_BETA = knob(
    "grad_norm_ref_beta", 0.99, CHECKS["beta"], "EMA decay of the ``grad_norm`` rule's slow reference norm, in [0, 1)."
)
CYCLE_LENGTH = knob("cycle_length", 1000.0, CHECKS["ge1"], "period of the ``cyclical`` rule, in update calls (>= 1).")


def loss_decay(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Loss decay: ``eta_{t+1} = eta_t / (1 + k * max(l^_t, 0))``; a negative smoothed loss counts as 0.

    The classic 1/t-style decay (Bottou, 2012, "Stochastic Gradient Descent
    Tricks", Sec. 5.2) with the loss in place of the step count.
    """
    inc = -xp.log1p(knobs.k * xp.clip(obs.hat, 0.0, SIGNAL_LIMIT))
    return xp.where(obs.ok, inc, 0.0)


def loss_trend(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Trend: ``eta <- eta * up`` when the smoothed loss improves by more than ``threshold`` (relative), else ``eta * down``.

    ``improved = l^_t < l^_{t-1} - threshold * |l^_{t-1}|``, sign-correct for
    negative losses (unlike torch's ``ReduceLROnPlateau`` ``best * (1 - thr)``).
    """
    return trend_step(xp, obs, knobs.log_up, knobs.log_down, knobs.threshold, False)


def loss_variance(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Variance: ``eta = base / (1 + k * sqrt(v^_t) / |l^_t|)``, lower lr under noisy loss.

    ``sqrt(v^_t) / |l^_t|`` is the loss's coefficient of variation (scale free).
    """
    return variance_factor(xp, obs, knobs.k, xp.abs(obs.hat))


def _slow_hat(xp: Any, slow: Any, pow_: Any, seen: Any) -> Any:
    """The ``grad_norm`` rule's bias-corrected slow reference norm."""
    return slow / xp.where(seen, 1.0 - pow_, 1.0)


def grad_norm(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Grad norm: ``eta = base * (g_slow / g^_t)^p``, the smoothed norm against a slow EMA of itself.

    ``g^_t`` is the norm's bias-corrected EMA (decay ``ema_beta``) and
    ``g_slow`` a bias-corrected EMA with the slower decay ``grad_norm_ref_beta``
    (Kingma & Ba, 2015, Sec. 3), kept in the rule's slots. The lr falls on a
    transient rise of the norm (explosions) and recovers as the slow average
    catches up, as in normalised gradient descent (Hazan et al., 2015, "Beyond
    Convexity: Stochastic Quasi-Convex Optimization"); a drift of the norm over
    the run (RL: the policy leaves its starting point and the norm grows
    several-fold) no longer ratchets the lr down, as the first smoothed norm
    did as reference. Scale free.
    """
    b = knobs.ref_beta
    x = xp.clip(obs.x, 0.0, SIGNAL_LIMIT)
    slow = xp.where(obs.ok, b * ctx.slots["slow"] + (1.0 - b) * x, ctx.slots["slow"])
    pow_ = xp.where(obs.ok, ctx.slots["slow_pow"] * b, ctx.slots["slow_pow"])
    seen = obs.ema.decay_pow < 1.0
    slow_hat = _slow_hat(xp, slow, pow_, seen)
    lg = xp.log(xp.clip(obs.hat, TINY, SIGNAL_LIMIT))
    lref = xp.log(xp.clip(slow_hat, TINY, SIGNAL_LIMIT))
    out = knobs.power * (lref - lg)
    return xp.where(seen, out, 0.0), {"slow": slow, "slow_pow": pow_}


def cyclical(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> tuple[Any, Any]:
    """Cyclical: cosine from ``max_lr`` to ``min_lr`` every ``cycle_length`` steps; each restart resets the smoothing.

    SGDR (Loshchilov & Hutter, 2017): ``eta_t = min_lr + (max_lr - min_lr) *
    (1 + cos(pi * p_t)) / 2`` with the phase ``p_t = ((t - 1) mod T) / T``,
    ``T = cycle_length``. Returns ``log(eta_t / base_lr)`` and whether step
    ``t`` starts a new cycle.
    """
    cfg, t, length = ctx.config, ctx.t, knobs.length
    tm1 = t - 1.0
    cycles = xp.floor(tm1 / length)
    pos = tm1 - cycles * length
    phase = pos / length
    lr = cfg.min_lr + (cfg.max_lr - cfg.min_lr) * 0.5 * (1.0 + xp.cos(math.pi * phase))
    lr = xp.clip(lr, cfg.min_lr, cfg.max_lr)
    restart = xp.logical_and(pos < 1.0, t > 1.0)
    return xp.log(lr) - cfg.log_of("base_lr"), restart


# --------------------------------------------------------------------------- explanations (diagnostics)


def _smoothed_loss(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> dict[str, Any]:
    return {"loss": obs.hat}


def _explain_variance(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> dict[str, Any]:
    """The smoothed loss and its coefficient of variation ``sqrt(v^) / |l^|``."""
    std = xp.sqrt(xp.clip(obs.var_hat, 0.0, SIGNAL_LIMIT * SIGNAL_LIMIT))
    return {"loss": obs.hat, "cv": std / xp.clip(xp.abs(obs.hat), REL_EPS, SIGNAL_LIMIT)}


def _explain_grad_norm(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> dict[str, Any]:
    """The smoothed gradient norm ``g^`` and the slow reference ``g_slow`` it is compared with."""
    reference = _slow_hat(xp, ctx.slots["slow"], ctx.slots["slow_pow"], obs.ema.decay_pow < 1.0)
    return {"grad_norm": obs.hat, "reference": reference}


def _restart_event(xp: Any, obs: Any, knobs: Any, ctx: RuleContext, outcome: Any) -> Any:
    """``restart``: a new cycle began (the smoothing was reset)."""
    return xp.where(outcome.out[1], 1, 0)


for _rule in (
    Rule("lr", "loss_decay", "increment", "loss", loss_decay, {"k": DECAY_K},
         formula='`η_{t+1} = η_t / (1 + k·max(ℓ̂_t, 0))` (`decay_k`)', explain=_smoothed_loss),
    Rule("lr", "trend", "increment", "loss", loss_trend,
         {"up": TREND_UP, "down": TREND_DOWN, "threshold": TREND_THRESHOLD},
         formula='`η ← η·up` if `ℓ̂_t < ℓ̂_{t-1} − thr·|ℓ̂_{t-1}|`, else `η·down` (`trend_up/down/threshold`)',
         explain=_smoothed_loss),
    Rule("lr", "variance", "factor", "loss", loss_variance, {"k": VARIANCE_K}, variance=True,
         formula='`η = base / (1 + k·σ̂_t/|ℓ̂_t|)` (`variance_k`)', explain=_explain_variance),
    Rule("lr", "grad_norm", "factor", "grad_norm", grad_norm, {"power": GRAD_NORM_POWER, "ref_beta": GRAD_NORM_REF_BETA},
         slots=(Slot("slow"), Slot("slow_pow", init=1.0)),
         formula='`η = base·(ĝ_slow/ĝ_t)^p`, `ĝ_slow` a slow EMA of the norm (`grad_norm_power`, `grad_norm_ref_beta`)',
         explain=_explain_grad_norm),
    Rule("lr", "cyclical", "clock", None, cyclical, {"length": CYCLE_LENGTH},
         formula='SGDR: `η = min + (max−min)(1+cos(π·p_t))/2`, `p_t = ((t−1) mod T)/T`; smoothing restarts each cycle (`cycle_length`)',
         events=("restart",), event=_restart_event),
):  # fmt: skip
    register(_rule)
