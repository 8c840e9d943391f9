"""The recommended configuration: the one to start from, with no choice but the base lr (and the run's length, if known)."""

from __future__ import annotations

import numbers
from typing import Any

from adaptive_sched._config import Config

__all__ = ["RECOMMENDED_RULES", "recommended"]

RECOMMENDED_RULES: dict[str, Any] = {
    "search_rule": "range",
    "anneal_rule": "slope",
    "anneal_grow": 0.0,
    "lr_rule": "grad_norm",
    "grad_norm_power": 0.5,
    "grad_norm_ref_beta": 0.99,
    "cooldown_rule": "linear",
}
"""What :func:`recommended` sets besides the lr, its bounds and the horizon (the rules' other knobs keep their defaults)."""

LR_BOUNDS: tuple[float, float] = (0.01, 100.0)
"""``min_lr = base_lr * 0.01`` and ``max_lr = base_lr * 100`` unless given: room for the search to grow 100x."""


def recommended(base_lr: Any, total_steps: Any = None, **overrides: Any) -> Config:
    """The recommended :class:`Config`: find the lr, hold it while the loss improves, cut it when it stalls, cool down at the end.

    Parts (each a rule documented with its formula in ``adaptive_sched.rules``
    and the README's rule table), in the order they act:

    * ``search_rule="range"``, at the start: an lr range test inside the run.
      The lr starts at ``base_lr / 2`` and grows geometrically (x1.12 per
      observation at first, then more slowly) while the loss keeps improving;
      when the smoothed loss stops improving or rises, it lands at about half
      the lr where the loss was best. A ``base_lr`` 30x too low is passed
      after about 45 observations; from a ``base_lr`` that is too high it backs
      off. It does not run when the run reports a reward or a KL (RL
      fine-tuning), where growth would push the KL up.
    * ``anneal_rule="slope"``, after the search: holds the lr while the raw
      loss falls significantly faster than its noise and cuts it when a t-test
      on the loss slope since the last change finds no significant progress
      (x0.6 if flat or rising, x0.9 if it still leans down; SASA/SLOPE, Lang,
      Zhang & Xiao, 2019). Once a cooldown is planned (``total_steps``, the
      trainer's horizon, or a cooldown started) the x0.9 cut is off: the
      cooldown anneals, and the test cuts only a stall. Its own growth phase
      is off (the search replaces it). It tests every 5 steps once 30 steps of its leg have passed, so a run
      shorter than the search plus 30 steps is never cut by it.
    * ``lr_rule="grad_norm"`` (``grad_norm_power=0.5``), all along: the lr
      scales with ``sqrt(g_slow / g_t)``, damping transient spikes of the
      gradient norm.
    * ``cooldown_rule="linear"``, at the end: with ``total_steps`` given, the
      last half of the run decays the lr linearly to ``min_lr`` on top of what
      the other rules decided (warmup-stable-decay; Hu et al., 2024; Hägele
      et al., 2024; Bergsma et al., 2025). Without it, nothing decays by the
      clock, and a cooldown can be started when you decide to stop:
      :func:`adaptive_sched.start_cooldown` (core),
      :func:`adaptive_sched.optax.start_cooldown` (optax),
      ``AdaptiveScheduler.cooldown(steps)`` (torch).

    Bounds: ``min_lr = base_lr / 100`` and ``max_lr = 100 * base_lr`` unless
    given. The defaults were chosen once, on ``adaptive-sched bench`` and a
    set of tasks outside it, the same for every task.

    Feed it the training loss (optax: ``value=``; torch: ``observe(loss=...,
    model=model)``, ``model=`` giving the gradient norm; optax computes the
    norm from the updates). For RL fine-tuning feed as the loss the negated
    regularised objective ``-(reward - beta * KL)`` (the slope test needs a
    signal that improves as training progresses; a policy-gradient surrogate
    loss does not): under the HF/TRL callback,
    ``AdaptiveSchedulerCallback(sched, loss_key=negated_objective(beta=args.beta))``.

    To sweep the base lr keep the bounds relative:
    ``sweep(train, recommended(1e-3), {"base_lr": [...]}, lr_bounds="scale")``.

    Args:
      base_lr: the learning rate around which the search starts (> 0;
        required: it replaces the optimizer's own lr); may be a JAX tracer or
        an array (sweeps vmap over it).
      total_steps: the run's length in optimizer steps (controller updates),
        if known: turns on the cooldown over its last half. ``None`` (default):
        horizon-free. The HF/TRL callback passes ``args.max_steps`` and the
        Lightning callback ``trainer.estimated_stepping_batches`` when you
        leave it out there.
      **overrides: any :class:`Config` field, applied last (e.g.
        ``max_lr=...``, ``search_rule="none"``, ``cooldown_fraction=0.2``).

    Returns:
      A validated :class:`Config`, accepted wherever a Config is.

    Raises:
      ValueError: ``base_lr``, ``total_steps`` or an override is invalid (the
        message names it and says what is allowed).
    """
    if isinstance(base_lr, bool) or base_lr is None or isinstance(base_lr, str):
        raise ValueError(f"recommended(base_lr={base_lr!r}) is invalid: must be a finite number > 0.")
    try:
        Config(base_lr=base_lr)
    except ValueError as err:
        raise ValueError(f"recommended(base_lr={base_lr!r}) is invalid: must be a finite number > 0.") from err
    kwargs: dict[str, Any] = dict(RECOMMENDED_RULES)
    if total_steps is not None:
        if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral) or total_steps < 1:
            raise ValueError(
                f"recommended(total_steps={total_steps!r}) is invalid: must be a positive integer (the run's "
                "length in optimizer steps) or None."
            )
        kwargs["cooldown_total_steps"] = float(int(total_steps))
    lo, hi = LR_BOUNDS
    if "min_lr" not in overrides:
        kwargs["min_lr"] = base_lr * lo
    if "max_lr" not in overrides:
        kwargs["max_lr"] = base_lr * hi
    kwargs.update(overrides)
    return Config(base_lr=base_lr, **kwargs)
