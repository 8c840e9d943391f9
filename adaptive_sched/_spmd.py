"""Signals averaged over a JAX mapped axis (``shard_map``/``pmap``): :func:`pmean_signals`.

Under ``shard_map`` or ``pmap`` every device computes the loss of its own
shard of the batch. Fed those local values, the controller would set a
different lr on every device. :func:`pmean_signals` averages each supplied
signal over the devices of ``axis_name`` with one ``lax.psum`` of one packed
array, so every device runs the identical update.
"""

from __future__ import annotations

from collections.abc import Hashable

import jax
import jax.numpy as jnp

from adaptive_sched._signals import SIGNAL_NAMES, Signals, array_rows, check_signal, finite_mean

__all__ = ["pmean_signals"]


def pmean_signals(signals: Signals, axis_name: Hashable | tuple[Hashable, ...] | None) -> Signals:
    """Each supplied signal averaged over the devices of ``axis_name`` that observed it.

    For a signal ``s`` with value ``x_{d,s}`` on device ``d``:

    .. math::

       \\bar x_s = \\frac{\\sum_{d:\\,x_{d,s}\\ \\mathrm{finite}} x_{d,s}}
                        {|\\{d : x_{d,s}\\ \\mathrm{finite}\\}|}

    computed with one ``lax.psum`` of a ``(2, n)`` float32 array (sums and
    counts of the ``n`` supplied signals: :func:`adaptive_sched._signals.array_rows`). A NaN/inf on some devices does not
    pull the mean: it is the mean over the others; NaN on every device stays
    NaN (not observed). A ``None`` signal stays ``None`` (the pattern of
    supplied signals is part of the trace, so it is the same on every device).
    This is the layout the torch adapter all-reduces across processes
    (:mod:`adaptive_sched._distributed`).

    Use it inside ``jax.shard_map`` or ``jax.pmap`` (where ``axis_name`` is
    bound), before :func:`adaptive_sched.update`::

        signals = pmean_signals(Signals(loss=local_loss), "data")
        state, hp = adaptive_sched.update(config, state, signals)

    The optax transformations do this themselves when given ``axis_name=``.
    Under plain ``jax.jit`` with sharded arrays the program has the global
    view (the loss is already the mean over the whole batch): pass nothing.

    Args:
      signals: this device's :class:`~adaptive_sched.Signals` (scalars or None).
      axis_name: the mapped axis name (or a tuple of names) to average over;
        ``None`` returns ``signals`` unchanged.

    Returns:
      Signals with every supplied field replaced by its float32 mean.

    Raises:
      ValueError: a supplied signal is not a scalar.
    """
    if axis_name is None:
        return signals
    names = [n for n in SIGNAL_NAMES if getattr(signals, n) is not None]
    if not names:
        return signals
    for n in names:
        check_signal(f"Signals.{n}", getattr(signals, n))
    total, count = jax.lax.psum(array_rows(jnp, [getattr(signals, n) for n in names]), axis_name)
    mean = finite_mean(jnp, total, count)
    return signals._replace(**{n: mean[i] for i, n in enumerate(names)})
