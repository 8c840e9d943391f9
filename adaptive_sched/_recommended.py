"""The recommended configuration: the one to start from, with no choice but the base lr (and the run's length, if known)."""

from __future__ import annotations

import numbers
from typing import Any

from adaptive_sched._config import Config

__all__ = ["RANGE_TEST_RULES", "RECOMMENDED_RULES", "recommended"]

RECOMMENDED_RULES: dict[str, Any] = {
    "lr_rule": "evidence",
    "cooldown_rule": "linear",
    "cooldown_fraction": 0.2,
}
"""What :func:`recommended` sets besides the lr, its bounds and the horizon (the rules' other knobs keep their defaults)."""

RANGE_TEST_RULES: dict[str, Any] = {
    "search_rule": "range",
    "anneal_rule": "slope",
    "anneal_grow": 0.0,
    "lr_rule": "grad_norm",
    "grad_norm_power": 0.5,
    "grad_norm_ref_beta": 0.99,
    "cooldown_rule": "linear",
}
"""The loss-only configuration :func:`recommended` returned before ``lr_rule="evidence"`` (an lr range test, then
the slope test): ``Config(base_lr=..., min_lr=base_lr / 100, max_lr=base_lr * 100, **RANGE_TEST_RULES)``; kept for
side-by-side measurements (``examples/bench_recommended_alternatives.py``)."""

LR_BOUNDS: tuple[float, float] = (0.01, 100.0)
"""``min_lr = base_lr * 0.01`` and ``max_lr = base_lr * 100`` unless given: room for the search to grow 100x."""


def recommended(base_lr: Any, total_steps: Any = None, **overrides: Any) -> Config:
    """The recommended :class:`Config`: move the lr only on evidence, cool down at the end when the length is known.

    Parts (each a rule documented with its formula in ``adaptive_sched.rules``), in the order they act:

    * ``lr_rule="evidence"``, all along. The first update runs at
      ``base_lr / 4`` and the lr rises to ``base_lr`` over 10 updates unless
      something says it is too high (no update runs at a ``base_lr`` nothing
      has judged); with a ``warmup_steps`` of yours, your warmup instead (a
      transformer at a high lr needs a longer start than this: give it one).
      Then it grows (at most 5% per update: 10x in about 46)
      while the gradient keeps pointing the way the last steps went (the mean
      of ``grad_cos`` significantly above 0.1: the lr is too small), and it is
      cut only on positive evidence that it is too high: the steps reverse
      (mean ``grad_cos`` significantly below -0.1: x0.7), the loss rises
      significantly (x0.5), or a gradient norm or loss is not finite (x0.5).
      A stalled loss never moves the lr below ``base_lr``, so a slow, steady
      loss keeps its lr; growth above ``base_lr`` is given back (at most 5%
      an update, never below ``base_lr``) once the mean ``grad_cos`` turns
      negative and the loss no longer falls significantly: a noise floor,
      which a higher lr raises. No growth during a warmup (``warmup_steps``)
      or a cooldown. Once a reward or a KL is observed (RL fine-tuning) the
      lr is ``base_lr`` (no warm start; a planned cooldown waits): nothing
      there judges the lr.
    * ``cooldown_rule="linear"``, at the end: with ``total_steps`` given, the
      last 20% of the run (``cooldown_fraction=0.2``) decays the lr linearly to ``min_lr`` on top of what
      the evidence rule decided (warmup-stable-decay; Hu et al., 2024; Hägele
      et al., 2024; Bergsma et al., 2025; Hägele et al. find a 20% cooldown
      enough; on the character GPT above at a base lr too low for a decay to
      pay, the last half's decay cost 1.9% against constant, 20% none). Without it, nothing decays by the
      clock; start a cooldown when you decide to stop:
      :func:`adaptive_sched.start_cooldown` (core),
      :func:`adaptive_sched.optax.start_cooldown` (optax),
      ``AdaptiveScheduler.cooldown(steps)`` (torch).

    Bounds: ``min_lr = base_lr / 100`` and ``max_lr = 100 * base_lr`` unless
    given. The defaults were chosen once, on ``adaptive-sched bench``, a set
    of tasks outside it, a linear regression and a character GPT, the same for every task.

    Feed it the training loss, the gradient norm and ``grad_cos``. The optax
    door computes both gradient signals from the updates it sees (keep the
    controller first in the chain, or put clipping before it: the cosine does
    not change under clipping by the global norm) and the torch adapter from
    the optimizer (``observe(loss=...)`` after ``optimizer.step()``; see
    :class:`~adaptive_sched.AdaptiveScheduler`). Without ``grad_cos`` the lr
    only ramps to ``base_lr`` and is cut on a rising loss: it never grows.

    To sweep the base lr keep the bounds relative:
    ``sweep(train, recommended(1e-3), {"base_lr": [...]}, lr_bounds="scale")``.

    Args:
      base_lr: the learning rate the controller starts from and judges (> 0;
        required: it replaces the optimizer's own lr); may be a JAX tracer or
        an array (sweeps vmap over it).
      total_steps: the run's length in optimizer steps (controller updates),
        if known: turns on the cooldown over its last 20%. ``None`` (default):
        horizon-free. The HF/TRL callback passes ``args.max_steps`` and the
        Lightning callback ``trainer.estimated_stepping_batches`` when you
        leave it out there.
      **overrides: any :class:`Config` field, applied last (e.g.
        ``max_lr=...``, ``evidence_max_growth=0.0`` (never above ``base_lr``), ``cooldown_fraction=0.2``).

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
