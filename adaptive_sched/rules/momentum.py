"""The ``momentum`` family: SGD ``momentum`` / Adam ``b1`` from the smoothed loss."""

from __future__ import annotations

from typing import Any

from adaptive_sched._rules import CHECKS, Family, Rule, RuleContext, knob, register, register_family
from adaptive_sched.rules._math import REL_EPS, SIGNAL_LIMIT

FAMILY = register_family(Family("momentum", "momentum rule, from the smoothed loss"))

MOMENTUM_A = knob("momentum_a", 1.0, CHECKS["positive"], "``a`` of the ``exp`` momentum rule (> 0).")
MOMENTUM_GAIN = knob("momentum_gain", 1.0, CHECKS["nonneg"], "gain of the ``relative`` momentum rule (>= 0).")


def momentum_inverse(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Inverse: ``mu = 1 - 1 / (1 + max(l^_t, 0))``: high loss, high momentum."""
    pos = xp.clip(obs.hat, 0.0, SIGNAL_LIMIT)
    return 1.0 - 1.0 / (1.0 + pos)


def momentum_exp(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Exp: ``mu = 1 - exp(-a * max(l^_t, 0))``."""
    pos = xp.clip(obs.hat, 0.0, SIGNAL_LIMIT)
    return 1.0 - xp.exp(-xp.clip(knobs.a * pos, 0.0, 80.0))


def momentum_relative(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Relative: ``mu = base_momentum - gain * r_t``, ``r_t = clip((l^_t - l^_{t-1}) / |l^_{t-1}|, -1, 1)``.

    Sign-correct for negative losses: momentum rises while the loss falls.
    """
    denom = xp.clip(xp.abs(obs.prev_hat), REL_EPS, SIGNAL_LIMIT)
    r = xp.clip((obs.hat - obs.prev_hat) / denom, -1.0, 1.0)
    r = xp.where(obs.has_prev, r, 0.0)
    return ctx.config.base_momentum - knobs.gain * r


def momentum_normalized(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Normalized: ``mu = n / (1 + n)``, ``n = max(l^_t, 0) / |l_ref|``, the loss in units of its first smoothed value.

    Scale free: the same momentum path for a loss in nats or in thousands.
    """
    pos = xp.clip(obs.hat, 0.0, SIGNAL_LIMIT)
    n = pos / xp.clip(xp.abs(obs.ema.ref), REL_EPS, SIGNAL_LIMIT)
    return n / (1.0 + n)


def _smoothed_loss(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> dict[str, Any]:
    return {"loss": obs.hat}


def _explain_normalized(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> dict[str, Any]:
    """The smoothed loss and the first smoothed value it is measured in units of."""
    return {"loss": obs.hat, "loss_ref": obs.ema.ref}


for _rule in (
    Rule("momentum", "inverse", "momentum", "loss", momentum_inverse,
         formula='`μ = 1 − 1/(1 + max(ℓ̂, 0))`', explain=_smoothed_loss),
    Rule("momentum", "exp", "momentum", "loss", momentum_exp, {"a": MOMENTUM_A},
         formula='`μ = 1 − exp(−a·max(ℓ̂, 0))` (`momentum_a`)', explain=_smoothed_loss),
    Rule("momentum", "relative", "momentum", "loss", momentum_relative, {"gain": MOMENTUM_GAIN},
         formula='`μ = base_momentum − gain·clip((ℓ̂_t − ℓ̂_{t-1})/|ℓ̂_{t-1}|, −1, 1)` (`momentum_gain`)',
         explain=_smoothed_loss),
    Rule("momentum", "normalized", "momentum", "loss", momentum_normalized,
         formula='`μ = n/(1+n)`, `n = max(ℓ̂, 0)/|ℓ̂_ref|` (scale free)', explain=_explain_normalized),
):  # fmt: skip
    register(_rule)
