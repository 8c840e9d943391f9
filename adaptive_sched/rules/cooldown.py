"""The ``cooldown`` family: the decay at the end of the run (warmup-stable-decay), on top of the adaptive lr."""

from __future__ import annotations

import math
from typing import Any

from adaptive_sched._rules import CHECKS, Family, Rule, RuleContext, Slot, knob, register, register_family
from adaptive_sched.rules._math import TINY

__all__ = ["COOLDOWN_FRACTION", "COOLDOWN_TOTAL_STEPS", "cooldown_slots", "start_cooldown"]

FAMILY = register_family(
    Family("cooldown", "decay of the lr at the end of the run (warmup-stable-decay), after the adaptive clamp")
)

COOLDOWN_TOTAL_STEPS = knob(
    "cooldown_total_steps", 0.0, CHECKS["nonneg"],
    "the run's length in update calls (the horizon; 0 = unknown: the cooldown runs only when started).",
)
COOLDOWN_FRACTION = knob(
    "cooldown_fraction", 0.5, CHECKS["down"],
    "the part of ``cooldown_total_steps`` the cooldown takes, at its end (in (0, 1]).",
)

SLOTS = (Slot("start"), Slot("length"), Slot("waited", late=True))
"""``start``: the step after which a cooldown started by hand begins (0: none); ``length``: its length in steps;
``waited``: the decayed updates it waited for an lr rule that was still busy (``ctx.searching``)."""

_SHAPES = ("linear", "sqrt", "cosine")


def _factor(xp: Any, shape: str, p: Any) -> Any:
    if shape == "linear":
        return 1.0 - p
    if shape == "sqrt":
        return 1.0 - xp.sqrt(p)
    return 0.5 * (1.0 + xp.cos(math.pi * p))


def _make(shape: str) -> Any:
    def cooldown(xp: Any, obs: Any, knobs: Any, ctx: RuleContext) -> Any:
        sl = ctx.slots
        total = knobs.total_steps
        known = total > 0.5
        t0 = total * (1.0 - knobs.fraction)
        waited = sl["waited"]
        if ctx.searching is not False:  # an lr rule says the lr is still too low: the horizon's decay waits
            waiting = xp.logical_and(xp.logical_and(ctx.searching, known), ctx.t - waited > t0)
            waited = xp.where(waiting, waited + 1.0, waited)
        t_h = ctx.t - waited
        p_h = xp.where(known, xp.clip((t_h - t0) / xp.clip(total - t0, 1.0, 1e30), 0.0, 1.0), 0.0)
        started = sl["length"] > 0.5
        p_m = xp.where(started, xp.clip((ctx.t - sl["start"]) / xp.clip(sl["length"], 1.0, 1e30), 0.0, 1.0), 0.0)
        p = xp.where(p_m > p_h, p_m, p_h)
        c = _factor(xp, shape, p)
        out = xp.log(xp.clip(c, TINY, 1.0))
        return out, {"start": sl["start"], "length": sl["length"], "waited": waited}

    cooldown.__name__ = f"cooldown_{shape}"
    return cooldown


cooldown_linear = _make("linear")
cooldown_linear.__doc__ = r"""Linear: the last part of the run decays the lr linearly to ``min_lr`` (warmup-stable-decay).

    WSD (Hu et al., 2024, "MiniCPM", Sec. 4; Hägele et al., 2024, "Scaling
    Laws and Compute-Optimal Training Beyond Fixed Training Durations") with
    the linear decay to zero of Bergsma et al. (2025, "Straight to Zero: Why
    Linearly Decaying the Learning Rate to Zero Works Best for LLMs"):
    ``lr_t = clip(lr^a_t * c(p_t), min_lr, max_lr)`` with ``c(p) = 1 - p``, where
    ``lr^a_t`` is the adaptive rules' lr (already clamped) and the progress
    ``p_t = clip((t - T0)/(T - T0), 0, 1)``, ``T = total_steps``,
    ``T0 = T(1 - fraction)``. Applied after the adaptive clamp, so it never
    winds up the stateful rules. While an lr rule that runs before it is busy
    (``ctx.searching``: the ``evidence`` rule once a reward or a KL is
    observed, where it cannot judge the lr), the horizon's clock stops: ``t``
    counts only the updates it did not wait, so the decay resumes from where
    it paused and may end above ``min_lr``. A cooldown started by hand never
    waits. Started by hand instead
    (:func:`adaptive_sched.start_cooldown` at step ``s`` for ``L`` steps):
    ``p_t = clip((t - s)/L, 0, 1)``; with both, the further along wins.
    At ``p = 1`` the lr is ``min_lr``.
    """
cooldown_sqrt = _make("sqrt")
cooldown_sqrt.__doc__ = r"""Sqrt: as ``linear`` with ``c(p) = 1 - sqrt(p)`` (the 1-sqrt cooldown of Hägele et al., 2024, Sec. 3)."""
cooldown_cosine = _make("cosine")
cooldown_cosine.__doc__ = r"""Cosine: as ``linear`` with ``c(p) = (1 + cos(pi p))/2`` (the cooldown shapes of Dremov et al., 2025)."""



def cooldown_slots(state: Any, steps: Any, start: Any = None, *, caller: str = "start_cooldown") -> dict[str, Any]:
    """The cooldown slots that make a cooldown of ``steps`` update calls begin after step ``start`` (default: now).

    ``start`` is a step count like ``state.step`` (the cooldown's first
    decayed update is ``start + 1``; the lr reaches ``min_lr`` at update
    ``start + steps``); it may lie in the future (a cooldown scheduled for the
    end of a run whose length becomes known later, as the HF and Lightning
    callbacks do). Values, not Python numbers, are fine: this is jit-safe.

    Args:
      state, steps, start: as :func:`start_cooldown`.
      caller: the function named in an error message (the front door the user called).

    Raises:
      ValueError: a concrete ``steps`` that is not a whole number >= 1, or a concrete ``start`` that is not a
        whole number >= 0.
    """
    _check_count(caller, "steps", steps, 1)
    if start is None:
        start = state.step
    else:
        _check_count(caller, "start", start, 0)
    return {"start": start, "length": steps}


def _check_count(caller: str, name: str, value: Any, low: int) -> None:
    """A concrete step count must be a whole number >= ``low``; a traced one is the caller's to check."""
    bad = f"{caller}({name}={value!r}) is invalid: must be a whole number of update calls >= {low}."
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise ValueError(bad)
    try:
        v = float(value)
    except (TypeError, ValueError):  # a tracer
        return
    if not math.isfinite(v) or v < low or v != math.floor(v):
        raise ValueError(bad)


def start_cooldown(state: Any, steps: Any, start: Any = None) -> Any:
    """``state`` with a cooldown of ``steps`` update calls started after step ``start`` (default: now). Pure, jit-safe.

    The horizon-free way to end a run the way warmup-stable-decay does (the
    reason people use WSD: a run can be continued from its stable phase): the
    lr decays on top of the adaptive lr, in the shape of the config's
    ``cooldown_rule``, to ``min_lr`` at update ``start + steps``; it lives in
    the state, so a checkpoint taken mid-cooldown resumes it exactly. With a
    horizon set too (``cooldown_total_steps``), the further-along of the two
    decays applies.

    Args:
      state: the controller's :class:`~adaptive_sched.State`; its config's ``cooldown_rule`` must not be ``"none"``.
      steps: the cooldown's length in update calls (a whole number >= 1; traced values are not checked).
      start: the step after which it begins (default ``state.step``: the next update; a whole number >= 0).

    Raises:
      ValueError: ``cooldown_rule`` is ``"none"`` (say which rule to use), or ``steps``/``start`` are invalid.
    """
    return start_cooldown_for(state, steps, start, caller="start_cooldown")


def start_cooldown_for(state: Any, steps: Any, start: Any, *, caller: str) -> Any:
    """:func:`start_cooldown`, its errors naming ``caller`` (the front door the user called)."""
    from adaptive_sched._core import set_slots

    if getattr(state.config, "cooldown_rule", "none") == "none":
        raise ValueError(
            f"{caller}: the config's cooldown_rule is 'none'; use a config with cooldown_rule='linear' "
            "(or 'sqrt', 'cosine'), e.g. adaptive_sched.recommended(base_lr), which has one."
        )
    return set_slots(state, "cooldown", **cooldown_slots(state, steps, start, caller=caller))


# --------------------------------------------------------------------------- explanation (diagnostics)



def _planned(xp: Any, knobs: Any, slots: Any) -> Any:
    """Scheduled: a horizon (``cooldown_total_steps > 0``) or a cooldown started by hand (its length set)."""
    return xp.logical_not(xp.logical_and(knobs.total_steps < 0.5, slots["length"] < 0.5))


def _cooling(xp: Any, knobs: Any, slots: Any, t: Any) -> Any:
    """Decaying at update ``t``: past ``T0`` with the horizon, or past the start set by hand."""
    by_horizon = xp.logical_and(knobs.total_steps > 0.5, t > knobs.total_steps * (1.0 - knobs.fraction))
    by_hand = xp.logical_and(slots["length"] > 0.5, t > slots["start"])
    return xp.logical_not(xp.logical_and(xp.logical_not(by_horizon), xp.logical_not(by_hand)))


def _cooldown_event(xp: Any, obs: Any, knobs: Any, ctx: RuleContext, outcome: Any) -> Any:
    """``cooldown``: the first decayed update (past ``T0`` with the horizon, or past the start set by hand)."""
    on = _cooling(xp, knobs, ctx.slots, ctx.t)
    return xp.where(xp.logical_and(on, outcome.last < 1), 1, 0)


for _shape, _fn, _formula in (
    ("linear", cooldown_linear, "`c = 1 − p`"),
    ("sqrt", cooldown_sqrt, "`c = 1 − √p`"),
    ("cosine", cooldown_cosine, "`c = (1 + cos πp)/2`"),
):
    register(
        Rule(
            "cooldown", _shape, "schedule", None, _fn,
            {"total_steps": COOLDOWN_TOTAL_STEPS, "fraction": COOLDOWN_FRACTION},
            slots=SLOTS,
            planned=_planned,
            cooling=_cooling,
            events=("cooldown",),
            event=_cooldown_event,
            formula=(
                f"after the adaptive clamp, `lr ← clip(lr·c(p), min_lr, max_lr)`, {_formula}, "
                "`p = clip((t − T₀)/(T − T₀), 0, 1)`, `T₀ = T(1 − fraction)` (`cooldown_total_steps`, "
                "`cooldown_fraction`), or from a start set by hand (`start_cooldown`) (WSD, Hu et al. 2024)"
            ),
        )
    )
