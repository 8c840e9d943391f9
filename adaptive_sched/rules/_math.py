"""Math shared by the built-in rules (and available to rules written elsewhere)."""

from __future__ import annotations

from typing import Any

import numpy as np

from adaptive_sched import _host
from adaptive_sched._signals import SIGNAL_LIMIT

__all__ = ["REL_EPS", "SIGNAL_LIMIT", "TINY", "either", "ever_seen", "log_knob", "trend_step", "variance_factor", "warmup_factor"]

TINY = 1e-30
"""Floor for values that are divided by or logged."""
REL_EPS = 1e-12
"""Floor of ``|reference|`` in relative comparisons."""

def log_knob(xp: Any, v: Any) -> Any:
    """``log`` of a value that depends on knobs only: on the host when it is a number.

    A rule reads the log of one of its knobs as ``knobs.log_<name>`` (and of a
    core knob as ``ctx.config.log_of(name)``): computed once per config,
    through this function. For other values that depend on knobs alone, use this. Every front door holds
    concrete knobs as float32 numbers (:func:`adaptive_sched._core.knob`), so
    they share one value, ``log`` in float64 rounded once to float32, instead of
    each backend's own float32 ``log`` (XLA, torch and libm differ by an ulp on
    some inputs, and these constants accumulate in ``log_scale``). Traced or
    array knobs (a ``vmap`` over configs) use ``xp.log``.
    """
    if isinstance(v, (int, float, np.float32)):  # a concrete knob: the host's float32 value
        return _host.log(_host.f32(v))
    return xp.log(v)


def either(xp: Any, a: Any, b: Any) -> Any:
    """``a or b`` with ``logical_and``/``logical_not`` (the slice every namespace here has).

    A Python ``False`` (a signal or a rule that is not there) drops out statically.
    """
    if a is False:
        return b
    if b is False:
        return a
    return xp.logical_not(xp.logical_and(xp.logical_not(a), xp.logical_not(b)))


def ever_seen(xp: Any, *views: Any) -> Any:
    """Whether any of ``views`` (signal :class:`~adaptive_sched._rules.Obs`, or None) has ever been observed."""
    out: Any = False
    for v in views:
        if v is not None:
            out = either(xp, out, v.ema.decay_pow < 1.0)
    return out


def warmup_factor(xp: Any, warmup_steps: Any, t: Any) -> Any:
    """The linear warmup's factor on the lr at update ``t``: ``clip(t / warmup_steps, 0, 1)``, 1 without a warmup."""
    w = warmup_steps
    return xp.where(w > 0.0, xp.clip(t / xp.where(w > 0.0, w, w + 1.0), 0.0, 1.0), 1.0)


def trend_step(xp: Any, obs: Any, log_up: Any, log_down: Any, threshold: Any, maximize: bool) -> Any:
    """``eta <- eta * up`` if the smoothed signal improved, else ``eta * down`` (log-increment; given ``log up``, ``log down``).

    Improvement is relative to the magnitude of the previous smoothed value, so
    it is correct for negative losses and rewards (unlike ``best * (1 - thr)``):
    minimising, ``improved = x^_t < x^_{t-1} - thr * |x^_{t-1}|``; maximising,
    ``improved = x^_t > x^_{t-1} + thr * |x^_{t-1}|``. Nothing moves on the first
    observation or when the signal is not observed.
    """
    margin = threshold * xp.abs(obs.prev_hat)
    improved = obs.hat > obs.prev_hat + margin if maximize else obs.hat < obs.prev_hat - margin
    active = xp.logical_and(obs.ok, obs.has_prev)
    step = xp.where(improved, log_up, log_down)
    return xp.where(active, step, 0.0)


def variance_factor(xp: Any, obs: Any, k: Any, scale: Any) -> Any:
    """``eta = base / (1 + k * sqrt(v^_t) / scale)`` as a log-factor."""
    std = xp.sqrt(xp.clip(obs.var_hat, 0.0, SIGNAL_LIMIT * SIGNAL_LIMIT))
    return -xp.log1p(k * xp.clip(std / xp.clip(scale, REL_EPS, SIGNAL_LIMIT), 0.0, 1e30))
