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


_INDEX = {name: i for i, name in enumerate(SIGNAL_NAMES)}


def from_keywords(
    caller: str,
    named: dict[str, Any],
    positional: tuple[Any, ...] = (),
    positional_names: tuple[str, ...] = (),
    alias: tuple[str, str, Any] | None = None,
) -> tuple[list[Any], tuple[str, ...]]:
    """A front door's signal arguments as values in :class:`Signals` order, plus each one's label.

    Args:
      caller: the front door's name for error messages, e.g. ``"observe()"``.
      named: ``{signal: value}`` (a keyword that is not a Signals field raises).
      positional: values given positionally, for ``positional_names`` in order.
      positional_names: the signals ``positional`` fills.
      alias: ``(alias, signal, value)``, e.g. ``("R", "reward", R)``: the value
        (when not None) fills ``signal``, and errors name it by ``alias``.

    Returns:
      ``(values, labels)``: one value (or None) and one name per Signals field.

    Raises:
      TypeError: an unknown keyword, too many positional values, or a signal
        given twice.
    """
    values: list[Any] = [None] * len(SIGNAL_NAMES)
    labels = SIGNAL_NAMES
    if len(positional) > len(positional_names):
        raise TypeError(f"{caller} got {len(positional)} extra positional signals; at most {positional_names}")
    for name, value in zip(positional_names, positional):
        if name in named:
            raise TypeError(f"{caller} got multiple values for argument {name!r}")
        values[_INDEX[name]] = value
    for name, value in named.items():
        i = _INDEX.get(name)
        if i is None:
            allowed = ", ".join([*(a[0] for a in (alias,) if a), *SIGNAL_NAMES])
            raise TypeError(f"{caller} got an unknown signal keyword {name!r}; allowed: {allowed}.")
        values[i] = value
    if alias is not None and alias[2] is not None:
        i = _INDEX[alias[1]]
        if values[i] is not None:
            raise TypeError(f"{caller} got both {alias[0]}= and {alias[1]}=: they are one signal, pass one.")
        values[i] = alias[2]
        labels = tuple(alias[0] if n == alias[1] else n for n in SIGNAL_NAMES)
    return values, labels
