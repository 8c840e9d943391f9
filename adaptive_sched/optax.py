"""The optax front door (needs ``jax`` and ``optax``: ``pip install adaptive-sched[jax]``).

* :func:`inject_hyperparams` wraps an optax optimizer factory; the controller
  writes its ``learning_rate`` (and ``b1``/``momentum``) every step.
* :func:`scale_by_controller` scales the updates of any chain by ``lr / base_lr``.

Both take the loss as the optax-standard extra argument ``value=`` and the
reward as ``reward=`` (plus optional ``kl=`` and ``grad_norm=``).
"""

from adaptive_sched._optax import (
    AdaptiveHyperparamsState,
    ScaleByControllerState,
    inject_hyperparams,
    momentum_arg,
    scale_by_controller,
)

__all__ = [
    "AdaptiveHyperparamsState",
    "ScaleByControllerState",
    "inject_hyperparams",
    "momentum_arg",
    "scale_by_controller",
]
