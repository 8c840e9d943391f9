"""The optax front door (needs ``jax`` and ``optax``: ``pip install adaptive-sched[jax]``).

* :func:`inject_hyperparams` wraps an optax optimizer factory; the controller
  writes its ``learning_rate`` (and ``b1``/``momentum``) every step.
* :func:`scale_by_controller` scales the updates of any chain by ``lr / base_lr``.

* :func:`multi_steps` is ``optax.MultiSteps`` (gradient accumulation) whose
  inner update reads the mean of the micro-steps' signals.
* :func:`pmean_signals` averages signals over a ``shard_map``/``pmap`` axis
  (the transformations do it themselves with ``axis_name=``).
* :func:`start_cooldown` starts the cooldown in an optimizer state's controllers
  (when you decide to stop a horizon-free run).
* :func:`diagnostics` reads what the controller decided and why from an optimizer
  state (each rule's factor, statistics and last event); :func:`controller_state`
  is the controller's :class:`~adaptive_sched.State` in it.

Both transformations take the loss as the optax-standard extra argument ``value=`` and the
reward as ``reward=`` (plus optional ``kl=`` and ``grad_norm=``).
"""

from adaptive_sched._multisteps import MultiStepsSignalsState, multi_steps
from adaptive_sched._optax import (
    AdaptiveHyperparamsState,
    PackedState,
    ScaleByControllerState,
    controller_state,
    diagnostics,
    inject_hyperparams,
    momentum_arg,
    scale_by_controller,
    start_cooldown,
)
from adaptive_sched._spmd import pmean_signals

__all__ = [
    "AdaptiveHyperparamsState",
    "MultiStepsSignalsState",
    "PackedState",
    "ScaleByControllerState",
    "controller_state",
    "diagnostics",
    "inject_hyperparams",
    "momentum_arg",
    "multi_steps",
    "pmean_signals",
    "scale_by_controller",
    "start_cooldown",
]
