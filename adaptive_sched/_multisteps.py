"""Gradient accumulation that feeds the controller the mean of the micro-steps' signals.

``optax.MultiSteps(opt, k)`` calls ``opt``'s update with the accumulated
gradient once every ``k`` micro-steps, but with the extra arguments of the
last micro-step only: the controller inside would see the last micro-batch's
loss (micro-losses 5, 5, 5, 1 are observed as 1). And
``MultiSteps.gradient_transformation()`` is a plain ``GradientTransformation``,
so inside ``optax.chain`` it receives no extra arguments at all (``value=`` is
dropped). :func:`multi_steps` fixes both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adaptive_sched._signals import SIGNAL_NAMES, array_rows, check_signal, finite_mean

__all__ = ["MultiStepsSignalsState", "multi_steps"]

# update() keyword of each signal (optax's convention: the loss is value=).
_KEYWORDS = tuple("value" if n == "loss" else n for n in SIGNAL_NAMES)


class MultiStepsSignalsState(NamedTuple):
    """State of :func:`multi_steps`.

    Attributes:
      inner: the ``optax.MultiStepsState`` (``inner.mini_step``,
        ``inner.gradient_step``, ``inner.inner_opt_state``).
      total: float32 ``(n_signals,)``: sum of the finite signal values of the
        micro-steps so far in this accumulation window (:data:`SIGNAL_NAMES` order).
      n_finite: float32 ``(n_signals,)``: how many of them were finite.
    """

    inner: optax.MultiStepsState
    total: jax.Array
    n_finite: jax.Array


def multi_steps(
    opt: optax.GradientTransformation,
    every_k_schedule: int | Callable[[jax.Array], jax.Array],
    **multi_steps_kwargs: Any,
) -> optax.GradientTransformationExtraArgs:
    """``optax.MultiSteps`` whose inner update sees the mean of the micro-steps' signals.

    Each call accumulates the gradient (``optax.MultiSteps``) and this
    micro-step's signals (``value=``, ``reward=``, ``grad_norm=``, ``kl=``); on
    the last micro-step of a window the inner transformation (e.g.
    :func:`adaptive_sched.optax.inject_hyperparams`) runs once with, for each
    supplied signal,

    .. math:: \\bar x = \\frac{1}{|F|} \\sum_{j \\in F} x_j

    over the window's micro-steps ``F`` where it was finite (NaN if none was),
    so the controller advances once per real optimizer step and reads the
    window's mean loss, not the last micro-batch's. Micro-steps that
    ``should_skip_update_fn`` skips are left out of the mean. The result is a
    ``GradientTransformationExtraArgs``, so inside ``optax.chain`` it receives
    ``value=`` (``optax.MultiSteps(...).gradient_transformation()`` would not).

    Example::

        tx = adaptive_sched.optax.multi_steps(
            adaptive_sched.optax.inject_hyperparams(optax.adam, config)(), every_k_schedule=4)
        updates, state = tx.update(grads, state, params, value=micro_batch_loss)

    Args:
      opt: the transformation to run once per ``every_k_schedule`` micro-steps.
      every_k_schedule: as in ``optax.MultiSteps``.
      **multi_steps_kwargs: other ``optax.MultiSteps`` arguments
        (``use_grad_mean``, ``should_skip_update_fn``, ``accumulator_dtype``).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state
      :class:`MultiStepsSignalsState`.
    """
    ms = optax.MultiSteps(opt, every_k_schedule, **multi_steps_kwargs)
    n = len(SIGNAL_NAMES)

    def init_fn(params: Any) -> MultiStepsSignalsState:
        return MultiStepsSignalsState(ms.init(params), jnp.zeros((n,), jnp.float32), jnp.zeros((n,), jnp.float32))

    def update_fn(
        updates: Any, state: MultiStepsSignalsState, params: Any = None, **extra_args: Any
    ) -> tuple[Any, MultiStepsSignalsState]:
        given = [extra_args.get(k) is not None for k in _KEYWORDS]
        for k, g in zip(_KEYWORDS, given):
            if g:
                check_signal(f"update({k}=...)", extra_args[k], "a scalar (a 0-d array or a Python number)")
        values = [extra_args[k] if g else jnp.nan for k, g in zip(_KEYWORDS, given)]  # not given: not finite
        rows = array_rows(jnp, values)
        total, count = state.total + rows[0], state.n_finite + rows[1]
        mean = finite_mean(jnp, total, count)
        for i, (k, g) in enumerate(zip(_KEYWORDS, given)):
            if g:
                extra_args[k] = mean[i]
        new_updates, inner = ms.update(updates, state.inner, params, **extra_args)
        old = state.inner
        progressed = (inner.mini_step != old.mini_step) | (inner.gradient_step != old.gradient_step)
        emitted = progressed & (inner.mini_step == 0)
        total = jnp.where(emitted, 0.0, jnp.where(progressed, total, state.total))
        count = jnp.where(emitted, 0.0, jnp.where(progressed, count, state.n_finite))
        return new_updates, MultiStepsSignalsState(inner, total, count)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
