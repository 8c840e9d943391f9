"""The ``kl`` family: the lr steered by the KL divergence to a reference policy."""

from __future__ import annotations

from typing import Any

from adaptive_sched._rules import CHECKS, Family, Rule, RuleContext, knob, register, register_family

FAMILY = register_family(Family("kl", "KL-driven lr rule", title="KL"))

KL_TARGET = knob("kl_target", 0.1, CHECKS["positive"], "KL the ``target`` rule steers towards (> 0).")
KL_GAIN = knob("kl_gain", 0.1, CHECKS["nonneg"], "log-lr change per step per unit of clipped relative KL error.")
KL_CLIP = knob("kl_clip", 0.2, CHECKS["positive"], "clip of the relative KL error ``KL/target - 1`` (> 0).")


def kl_target(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
    """Target: ``eta <- eta * exp(-gain * clip(KL^/target - 1, -c, c))``: lr down while the KL overshoots.

    The proportional controller of Ziegler et al. (2019), "Fine-Tuning Language
    Models from Human Preferences", Sec. 2.2, applied to the lr instead of the
    KL coefficient: lr down while the smoothed KL overshoots ``target``, up
    while it is below.
    """
    err = xp.clip(obs.hat / knobs.target - 1.0, -knobs.clip, knobs.clip)
    inc = -knobs.gain * err
    return xp.where(obs.ok, inc, 0.0)


def _explain_kl(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> dict[str, Any]:
    """The smoothed KL and the clipped relative error ``clip(KL^/target - 1, -c, c)`` the rule acts on."""
    return {"kl": obs.hat, "error": xp.clip(obs.hat / knobs.target - 1.0, -knobs.clip, knobs.clip)}


def _kl_event(xp: Any, obs: Any, knobs: Any, ctx: RuleContext, outcome: Any) -> Any:
    """``push_down`` / ``push_up``: the rule started moving the lr down (KL above target) or up (below)."""
    code = xp.where(outcome.out < 0.0, 1, xp.where(outcome.out > 0.0, 2, 0))
    changed = xp.logical_not(xp.logical_and(xp.logical_not(code < outcome.last), xp.logical_not(code > outcome.last)))
    return xp.where(changed, code, 0)


for _rule in (
    Rule("kl", "target", "increment", "kl", kl_target, {"target": KL_TARGET, "gain": KL_GAIN, "clip": KL_CLIP},
         formula='`η ← η·exp(−gain·clip(KL̂/target − 1, −c, c))` (`kl_target`, `kl_gain`, `kl_clip`; Ziegler et al. 2019)',
         events=("push_down", "push_up"), event=_kl_event, explain=_explain_kl),
):  # fmt: skip
    register(_rule)
