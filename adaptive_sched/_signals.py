"""The one list of training signals: :class:`Signals`.

Everything that depends on which signals exist derives from ``Signals._fields``:
the State's EMA fields, the host path's flat layout, checkpoint keys, the
torch adapter's ``observe`` keywords and the optax extra arguments. Adding a
signal is one field here (plus, optionally, its EMA decay in :data:`EMA_BETA`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["EMA_BETA", "SIGNAL_NAMES", "Signals", "beta_field"]


class Signals(NamedTuple):
    """What training observed this step. ``None`` (or NaN/inf) means not observed.

    Attributes:
      loss: training loss (any sign; lower is better).
      reward: RL reward (any sign; higher is better).
      grad_norm: global gradient norm (>= 0).
      kl: KL divergence of the policy to its reference.
    """

    loss: Any = None
    reward: Any = None
    grad_norm: Any = None
    kl: Any = None


SIGNAL_NAMES: tuple[str, ...] = Signals._fields

EMA_BETA: dict[str, str] = {"reward": "ema_reward_beta", "kl": "ema_kl_beta"}
"""Config field of each signal's EMA decay; signals not listed use ``ema_beta``."""


def beta_field(signal: str) -> str:
    """The Config field holding ``signal``'s EMA decay."""
    return EMA_BETA.get(signal, "ema_beta")
