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


for _rule in (
    Rule("kl", "target", "increment", "kl", kl_target, {"target": KL_TARGET, "gain": KL_GAIN, "clip": KL_CLIP},
         formula='`η ← η·exp(−gain·clip(KL̂/target − 1, −c, c))` (`kl_target`, `kl_gain`, `kl_clip`; Ziegler et al. 2019)'),
):  # fmt: skip
    register(_rule)
