"""The ``reward`` family: lr rules driven by an RL reward (higher is better)."""

from __future__ import annotations

from typing import Any

from adaptive_sched._rules import CHECKS, Family, Rule, RuleContext, knob, register, register_family
from adaptive_sched.rules._math import SIGNAL_LIMIT, trend_step, variance_factor

FAMILY = register_family(Family("reward", "reward-driven lr rule"))

REWARD_CENTER = knob("reward_center", 0.0, CHECKS["any"], "reward mapped to ``base_lr`` by ``scaling``.")
REWARD_SPAN = knob(
    "reward_span",
    1.0,
    CHECKS["positive"],
    "reward scale (> 0): ``scaling`` maps ``center -/+ span`` to about ``0`` / ``2 * base_lr``; "
    "``variance`` measures the reward's standard deviation in units of it.",
)
REWARD_UP = knob("reward_up", 1.01, CHECKS["up"], "lr factor per step when the smoothed reward improves (>= 1).")
REWARD_DOWN = knob("reward_down", 0.99, CHECKS["down"], "lr factor per step when it does not (in (0, 1]).")
REWARD_THRESHOLD = knob("reward_threshold", 1e-4, CHECKS["nonneg"], "relative improvement of the reward needed (>= 0).")
REWARD_VARIANCE_K = knob("reward_variance_k", 1.0, CHECKS["nonneg"], "strength of the reward ``variance`` rule.")

_MIN_SCALING = 1e-6  # "about 0" of the reward scaling rule, as a factor of base_lr

def reward_scaling(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Scaling: ``eta = base * max(1 + (R^_t - center) / span, 1e-6)``.

    Maps ``center - span`` to about 0 (then ``min_lr``), ``center`` to
    ``base_lr`` and ``center + span`` to ``2 * base_lr``.
    """
    f = xp.clip(1.0 + (obs.hat - knobs.center) / knobs.span, _MIN_SCALING, 1e30)
    out = xp.log(f)
    return xp.where(obs.ema.decay_pow < 1.0, out, 0.0)


def reward_trend(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Trend: ``eta <- eta * up`` when the smoothed reward improves by more than ``threshold`` (relative), else ``eta * down``.

    ``improved = R^_t > R^_{t-1} + threshold * |R^_{t-1}|``, sign-correct for negative rewards.
    """
    return trend_step(xp, obs, knobs.log_up, knobs.log_down, knobs.threshold, True)


def reward_variance(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Variance: ``eta = base / (1 + k * sqrt(v^_t) / span)``, lower lr under a noisy reward."""
    return variance_factor(xp, obs, knobs.k, knobs.span)


def _smoothed_reward(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> dict[str, Any]:
    return {"reward": obs.hat}


def _explain_variance(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> dict[str, Any]:
    """The smoothed reward and its standard deviation ``sqrt(v^)``."""
    return {"reward": obs.hat, "std": xp.sqrt(xp.clip(obs.var_hat, 0.0, SIGNAL_LIMIT * SIGNAL_LIMIT))}


for _rule in (
    Rule("reward", "scaling", "factor", "reward", reward_scaling, {"center": REWARD_CENTER, "span": REWARD_SPAN},
         formula='`η = base·max(1 + (R̂ − center)/span, 1e−6)`: `center∓span ↦ ≈0 / 2·base`', explain=_smoothed_reward),
    Rule("reward", "trend", "increment", "reward", reward_trend,
         {"up": REWARD_UP, "down": REWARD_DOWN, "threshold": REWARD_THRESHOLD},
         formula='as `trend`, maximising: up if `R̂_t > R̂_{t-1} + thr·|R̂_{t-1}|` (`reward_up/down/threshold`)',
         explain=_smoothed_reward),
    Rule("reward", "variance", "factor", "reward", reward_variance,
         {"k": REWARD_VARIANCE_K, "span": REWARD_SPAN}, variance=True,
         formula='`η = base / (1 + k·σ̂_R/span)` (`reward_variance_k`, `reward_span`)', explain=_explain_variance),
):  # fmt: skip
    register(_rule)
