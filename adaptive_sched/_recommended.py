"""The recommended configuration: the one to start from, with no choice but the base lr."""

from __future__ import annotations

from typing import Any

from adaptive_sched._config import Config

__all__ = ["recommended"]

RECOMMENDED_RULES: dict[str, Any] = {
    "anneal_rule": "slope",
    "lr_rule": "grad_norm",
    "grad_norm_power": 0.5,
    "grad_norm_ref_beta": 0.99,
}
"""What :func:`recommended` sets besides the lr and its bounds (the rules' other knobs keep their defaults)."""


def recommended(base_lr: Any, **overrides: Any) -> Config:
    """The recommended :class:`Config`: horizon-free annealing by a stationarity test, times a grad-norm guard.

    Rules (each documented with its formula in ``adaptive_sched.rules`` and
    the README's rule table):

    * ``anneal_rule="slope"``: holds the lr while the raw loss falls
      significantly faster than its noise, raises it (x2 per test) while
      progress keeps steepening before the first cut, and cuts it once a
      t-test on the slope of the loss since the last change finds no
      significant progress (x0.6 if the slope is flat or rising, x0.9 if it
      still leans down; SASA/SLOPE, Lang, Zhang & Xiao, 2019). It needs no
      total step count.
    * ``lr_rule="grad_norm"`` with ``grad_norm_power=0.5``: the lr scales with
      ``sqrt(g_slow / g_t)``, the gradient norm against a slow EMA of itself,
      which damps transient spikes of the norm.

    Bounds: ``min_lr = base_lr / 100`` and ``max_lr = 10 * base_lr`` unless
    given. The defaults of every knob were chosen once on ``adaptive-sched
    bench`` (the same for every task), not per task.

    Feed it the training loss (optax: ``value=``; torch: ``observe(loss=...)``)
    and, in torch, the model or the gradient norm for the grad-norm guard
    (``observe(loss=..., model=model)``; optax computes the norm from the
    updates). For RL fine-tuning feed as the loss the negated regularised
    objective ``-(reward - beta * KL)`` (what the bench's RL tasks do): the
    stationarity test needs a signal that improves as training progresses, and
    a policy-gradient surrogate loss does not. Under the HF/TRL callback:
    ``AdaptiveSchedulerCallback(sched, loss_key=negated_objective(beta=args.beta))``
    (``adaptive_sched.adapters.hf``).

    To sweep the base lr, keep the bounds relative:
    ``sweep(train, recommended(1e-3), {"base_lr": [...]}, lr_bounds="scale")``
    gives ``recommended(b)`` at every point.

    Args:
      base_lr: the learning rate the run starts from (> 0; required: it is the
        one choice, and it replaces the optimizer's own lr); may be a JAX
        tracer or an array (sweeps vmap over it).
      **overrides: any :class:`Config` field, applied last (e.g.
        ``max_lr=...``, ``anneal_drop=...``, ``kl_rule="target"``).

    Returns:
      A validated :class:`Config`, accepted wherever a Config is (the optax
      front doors, ``AdaptiveScheduler(optimizer, config)``, sweeps).

    Raises:
      ValueError: ``base_lr`` or an override is invalid (the message names it).
    """
    if isinstance(base_lr, bool) or base_lr is None or isinstance(base_lr, str):
        raise ValueError(f"recommended(base_lr={base_lr!r}) is invalid: must be a finite number > 0.")
    try:
        Config(base_lr=base_lr)
    except ValueError as err:
        raise ValueError(f"recommended(base_lr={base_lr!r}) is invalid: must be a finite number > 0.") from err
    kwargs: dict[str, Any] = dict(RECOMMENDED_RULES)
    if "min_lr" not in overrides:
        kwargs["min_lr"] = base_lr / 100.0
    if "max_lr" not in overrides:
        kwargs["max_lr"] = base_lr * 10.0
    kwargs.update(overrides)
    return Config(base_lr=base_lr, **kwargs)
