"""What the framework callbacks (:mod:`.hf`, :mod:`.lightning`) share beyond the core's intake: their key arguments.

Reading and merging the values is the core's (:mod:`adaptive_sched._signals`):
:class:`~adaptive_sched._signals.Intake` checks, converts and counts each value
and gives each signal's finite mean.
"""

from __future__ import annotations

from typing import Any

__all__ = ["signal_keys"]


def signal_keys(*, functions: bool = False, **keys: Any) -> dict[str, Any]:
    """The callbacks' ``<signal>_key=`` arguments as ``{signal: key}``, without the ones set to None (not fed).

    Args:
      functions: also accept a callable ``logs -> value or None`` as a key (the HF callback does).
      **keys: ``<signal>=key``.

    Raises:
      TypeError: a key that is neither a str nor None (nor, with ``functions``, a callable); the message
        names the argument.
    """
    for name, key in keys.items():
        if key is not None and not isinstance(key, str) and not (functions and callable(key)):
            also = "; a function of the log row (logs -> number or None) is accepted too" if functions else ""
            raise TypeError(
                f"AdaptiveSchedulerCallback({name}_key=...) must be a log key (str) or None, got {key!r}{also}"
            )
    return {name: key for name, key in keys.items() if key is not None}
