"""What the framework callbacks (:mod:`.hf`, :mod:`.lightning`) share beyond the core's intake: their key arguments.

Reading and merging the values is the core's (:mod:`adaptive_sched._signals`):
:class:`~adaptive_sched._signals.Intake` checks, converts and counts each value
and gives each signal's finite mean.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

__all__ = ["note_if_never_annealed", "schedule_cooldown", "signal_keys"]


def _slot(sched: Any, family: str, slot: str) -> float | None:
    """A slot of ``family``'s active rule in the scheduler's controller state, as a float (None: no such rule)."""
    name = getattr(sched.config, f"{family}_rule", "none")
    if name == "none":
        return None
    return float(sched.controller_state.rule_state[f"{family}.{name}.{slot}"])


def schedule_cooldown(sched: Any, total_steps: Any) -> bool:
    """Schedule the config's cooldown over the last ``cooldown_fraction`` of a run of ``total_steps`` optimizer steps.

    What the callbacks do at the start of training with the horizon the
    framework knows (HF: ``state.max_steps``; Lightning:
    ``trainer.estimated_stepping_batches``), so ``recommended(base_lr)``
    cools down without the user passing ``total_steps``. Nothing happens when
    the config has no cooldown rule, knows its horizon already
    (``cooldown_total_steps > 0``), a cooldown is already set (resumed from a
    checkpoint, or started by hand), or ``total_steps`` is not a finite
    positive number.

    Returns:
      True if the cooldown was scheduled.
    """
    cfg = sched.config
    length = _slot(sched, "cooldown", "length")
    if length is None or float(cfg.cooldown_total_steps) > 0.0 or length > 0.0:
        return False
    try:
        total = float(total_steps)
    except (TypeError, ValueError):
        return False
    if not math.isfinite(total) or total < 1.0:
        return False
    steps = max(1, round(total * float(cfg.cooldown_fraction)))
    sched.cooldown(steps, start=max(0, int(total) - steps))
    return True


def note_if_never_annealed(sched: Any, caller: str) -> None:
    """Warn once, at the end of training, when nothing annealed the lr: no cooldown ran or was scheduled, and the lr
    rules never decay it by themselves (an ``anneal_rule="slope"`` that never tested, or ``lr_rule="evidence"``,
    which moves the lr only on evidence that it is too low or too high: without a cooldown the run ends at the
    lr it trained at)."""
    if getattr(sched, "_noted_unannealed", False):
        return
    cfg = sched.config
    tests = _slot(sched, "anneal", "tests")  # the slope test's tests so far (None: no anneal rule)
    slope_idle = tests is not None and tests <= 0.0
    evidence_only = tests is None and getattr(cfg, "lr_rule", "none") == "evidence"
    if not (slope_idle or evidence_only):
        return
    length = _slot(sched, "cooldown", "length")
    if length is not None and (length > 0.0 or float(cfg.cooldown_total_steps) > 0.0):
        return
    sched._noted_unannealed = True
    if getattr(cfg, "cooldown_rule", "none") == "none":
        advice = ("The config has no cooldown (cooldown_rule='none'): add one (cooldown_rule='linear', as "
                  "recommended() has) and the framework's max_steps decays the lr over the end of the run.")
    else:
        advice = ("give the horizon (recommended(base_lr, total_steps=...), or the framework's max_steps) so the "
                  "cooldown decays it, or start one by hand (AdaptiveScheduler.cooldown(steps)).")
        advice = ("For short runs " if slope_idle else "") + advice
        advice = advice[0].upper() + advice[1:]
    if slope_idle:
        n_min = int(float(cfg.anneal_min_samples))
        after = " after the lr search" if getattr(cfg, "search_rule", "none") != "none" else ""
        what = f"the slope test never ran (it first tests {n_min} steps into a leg{after})"
    else:
        what = ("no cooldown ran (lr_rule='evidence' never decays the lr by itself: it moves it only on evidence "
                "that it is too low or too high)")
    warnings.warn(
        f"{caller}: training ended after {sched.optimizer_steps} optimizer steps and {what}, so nothing annealed "
        f"the lr. {advice}",
        UserWarning,
        stacklevel=3,
    )


def signal_keys(*, functions: bool = False, **keys: Any) -> dict[str, Any]:
    """The callbacks' ``<signal>_key=`` arguments as ``{signal: key}``, without the ones set to None (not fed).

    Args:
      functions: also accept a callable ``logs -> value or None`` as a key (the HF callback does).
      **keys: ``<signal>=key``.

    Raises:
      TypeError: a key that is neither a str nor None (nor, with ``functions``, a callable); the message
        names the argument.
    """
    for name, key in keys.items():
        if key is not None and not isinstance(key, str) and not (functions and callable(key)):
            also = "; a function of the log row (logs -> number or None) is accepted too" if functions else ""
            raise TypeError(
                f"AdaptiveSchedulerCallback({name}_key=...) must be a log key (str) or None, got {key!r}{also}"
            )
    return {name: key for name, key in keys.items() if key is not None}
